"""The tokenizer interface every Megatron tokenizer family implements.

It mirrors Megatron-LM's legacy tokenizer interface (``tokenize``/``detokenize``, ``vocab_size``,
``vocab``/``inv_vocab`` and the special-token ids), plus ``tokenize_batch``, a batched path the
preprocessing tool uses so the Rust / C++ libraries can encode many documents per call.
"""
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Dict, List, Optional

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
    Subclasses set ``megatron_class_name`` to the name Megatron-LM's class has (e.g.
    ``_GPT2BPETokenizer``) so those descriptions match Megatron-LM's byte for byte.
    """

    megatron_class_name: Optional[str] = None

    def __init__(self, *tokenizer_paths: Optional[str], **tokenizer_options: Any):
        self.unique_identifiers: Dict[str, Any] = OrderedDict()
        self.unique_identifiers["class"] = self.megatron_class_name or type(self).__name__
        self.unique_identifiers["tokenizer_path"] = list(tokenizer_paths)
        for name, value in tokenizer_options.items():
            self.unique_identifiers[name] = str(value)
        self.unique_description = json.dumps(self.unique_identifiers, indent=4)

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
        raise NotImplementedError(f"{type(self).__name__} has no attribute '{what}'")

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
