"""The tokenizer interface every Megatron tokenizer family implements.

It mirrors Megatron-LM's tokenizer interface (``tokenize``/``detokenize``, ``vocab_size``,
``vocab``/``inv_vocab`` and the special-token ids), plus ``tokenize_batch``, a batched path the
preprocessing tool uses so the Rust / C++ libraries can encode many documents per call.

Every family has two behaviours, chosen by ``legacy`` (``--legacy-tokenizer``): the default
follows Megatron-LM's current tokenizers (``megatron.core.tokenizers``, megatron-core 0.16), the
legacy one its older classes (``megatron.training.tokenizer``, core_v0.15). docs/data.md has a
table of what differs per family.
"""
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Dict, List, Optional

# The class name megatron-core's current tokenizers write into their identifiers (which dataset
# caches hash): every family built from Megatron-LM's flags is this one class there.
CURRENT_CLASS = "megatron.core.tokenizers.text.models.default_tokenizer.DefaultTokenizerText"


class NoSuchToken(AttributeError, NotImplementedError):
    """A special token the tokenizer does not have. Megatron-LM's legacy classes raise
    NotImplementedError, its current ones AttributeError or NameError; being both, this one is
    seen by ``except NotImplementedError`` and by ``getattr(tokenizer, name, None)`` alike."""


def current_identifiers(tokenizer_path: Optional[str], **options: Any) -> Dict[str, Any]:
    """``unique_identifiers`` as megatron-core's current tokenizers write them: the class, the
    path, then the options the tokenizer was built with, as strings."""
    identifiers: Dict[str, Any] = OrderedDict()
    identifiers["class"] = CURRENT_CLASS
    identifiers["tokenizer_path"] = tokenizer_path
    for name, value in options.items():
        identifiers[name] = str(value)
    return identifiers

# transformers' / BERT's clean-up of spaces that word-joining leaves before punctuation.
_SPACE_CLEAN_UPS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


def clean_up_tokenization(text: str) -> str:
    for before, after in _SPACE_CLEAN_UPS:
        text = text.replace(before, after)
    return text


class MegatronTokenizer(ABC):
    """Abstract tokenizer: text <-> token ids, with Megatron's special-token properties.

    ``unique_identifiers`` / ``unique_description`` follow Megatron-LM: datasets put them in their
    cache description (and its MD5), so the same tokenizer files give the same cache names.
    The constructor writes the legacy classes' form; subclasses set ``megatron_class_name`` to
    the name Megatron-LM's legacy class has (e.g. ``_GPT2BPETokenizer``), and in current mode
    call ``_set_identifiers(current_identifiers(...))``.
    """

    megatron_class_name: Optional[str] = None
    legacy: bool = False

    def __init__(self, *tokenizer_paths: Optional[str], **tokenizer_options: Any):
        identifiers: Dict[str, Any] = OrderedDict()
        identifiers["class"] = self.megatron_class_name or type(self).__name__
        identifiers["tokenizer_path"] = list(tokenizer_paths)
        for name, value in tokenizer_options.items():
            identifiers[name] = str(value)
        self._set_identifiers(identifiers)

    def _set_identifiers(self, identifiers: Dict[str, Any]) -> None:
        self.unique_identifiers = identifiers
        self.unique_description = json.dumps(identifiers, indent=4)

    # ---- text <-> ids -------------------------------------------------------------------------

    @abstractmethod
    def tokenize(self, text: str) -> List[int]:
        """Token ids of `text`."""

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        """Token ids of each text; families backed by a native library override this."""
        return [self.tokenize(text) for text in texts]

    @abstractmethod
    def detokenize(self, ids: List[int]) -> str:
        """Text of `ids`."""

    def offsets(self, ids: List[int], text: str) -> List[int]:
        raise NotImplementedError(f"{type(self).__name__} has no method 'offsets'")

    # ---- vocabulary ---------------------------------------------------------------------------

    # Families with a token table set ``self._vocab`` (text -> id) and ``self._inv_vocab``
    # (id -> text); the others override these properties.

    @property
    def vocab_size(self) -> int:
        """Number of token ids before padding (what --make-vocab-size-divisible-by pads)."""
        return len(self._vocab)

    @property
    def vocab(self) -> Dict[str, int]:
        """Token text -> id."""
        return self._vocab

    @property
    def inv_vocab(self) -> Dict[int, str]:
        """Id -> token text."""
        return self._inv_vocab

    # ---- special tokens: families without one raise, as in Megatron-LM, so callers that
    # ---- probe (GPTDataset's pad id) can fall back with try/except.

    def _missing(self, what: str):
        raise NoSuchToken(f"{type(self).__name__} has no attribute '{what}'")

    @property
    def cls(self) -> int:
        return self._missing("cls")

    @property
    def sep(self) -> int:
        return self._missing("sep")

    @property
    def pad(self) -> int:
        return self._missing("pad")

    @property
    def eod(self) -> int:
        return self._missing("eod")

    @property
    def bos(self) -> int:
        return self._missing("bos")

    @property
    def eos(self) -> int:
        return self._missing("eos")

    @property
    def mask(self) -> int:
        return self._missing("mask")

    @property
    def additional_special_tokens_ids(self) -> Optional[List[int]]:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"
