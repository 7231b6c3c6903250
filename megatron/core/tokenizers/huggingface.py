"""HuggingFaceTokenizer: a ``tokenizer.json`` (or a folder as transformers saves it).

Megatron-LM loads these through ``transformers.AutoTokenizer``; a fast tokenizer there is a thin
layer over the same ``tokenizers`` object we load directly, so transformers is not needed. In
both modes the added (special) tokens written in the text are matched, as transformers does, and
bos/eos/pad come from ``tokenizer_config.json`` / ``special_tokens_map.json``. The modes differ
in the file's post-processor (a Llama-style file puts its BOS in front):

* current (megatron-core's HuggingFaceTokenizer): ``tokenize`` = ``convert_tokens_to_ids(
  tokenize(text))``, no post-processor, unless --tokenizer-hf-include-special-tokens;
  cls/sep/mask are named too (cls falls back to bos, sep to eos);
* legacy (Megatron-LM's ``_HuggingFaceTokenizer``): ``tokenizer(text).input_ids``, with it.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

from megatron.core.errors import DataError, MissingFileError
from megatron.core.tokenizers.base import (
    MegatronTokenizer,
    clean_up_tokenization,
    current_identifiers,
)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # later ones win
# When no config names an eos, the first of these that the file has is used (for a bare
# tokenizer.json; transformers would have no eos, and --append-eod would fail).
COMMON_EOS_TOKENS = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>", "[SEP]")


def _find_tokenizer_file(path: str) -> str:
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidate = os.path.join(path, TOKENIZER_FILE)
        if os.path.isfile(candidate):
            return candidate
        found = sorted(os.listdir(path))[:20]
        hint = ""
        if any(name.endswith(".model") for name in found):
            hint = (" It has a SentencePiece .model: pass that file with --tokenizer-type "
                    "SentencePieceTokenizer, GPTSentencePieceTokenizer or Llama2Tokenizer.")
        raise MissingFileError(
            f"--tokenizer-model {path}: expected a Hugging Face tokenizer folder containing "
            f"{TOKENIZER_FILE} (as transformers' save_pretrained writes it), found {found}.{hint}"
        )
    return _download_from_hub(path)


def _download_from_hub(name: str) -> str:
    """A hub model name ("org/model"), fetched through huggingface_hub when it is installed
    (its cache serves it offline once fetched)."""
    missing = (f"--tokenizer-model {name}: no such file or folder. Pass a local tokenizer.json "
               "or a folder holding one (as transformers' save_pretrained writes it)")
    if os.path.isabs(name) or name.startswith(".") or name.count("/") > 1:
        raise MissingFileError(missing)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingFileError(
            missing + ", or install huggingface_hub to fetch hub names") from None
    try:
        folder = snapshot_download(repo_id=name, allow_patterns=[TOKENIZER_FILE, *CONFIG_FILES])
    except Exception as err:  # offline, unknown repository, gated model, ...
        raise MissingFileError(f"{missing}; fetching it from the hub failed: {err}") from err
    return _find_tokenizer_file(folder)


def _read_config(folder: str) -> Tuple[Dict[str, Optional[str]], bool]:
    """Special-token texts by name (bos_token, eos_token, pad_token, ...) from the config
    files, and whether decoding cleans up spaces before punctuation (transformers' option)."""
    names: Dict[str, Optional[str]] = {}
    clean_up = False
    for file_name in CONFIG_FILES:
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            try:
                config = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataError(f"--tokenizer-model: {path} is not valid JSON ({err})") from err
        if not isinstance(config, dict):
            raise DataError(f"--tokenizer-model: {path} is not a JSON object")
        for key, value in config.items():
            if key.endswith("_token"):
                # An AddedToken is saved as a dict with its text under "content".
                names[key] = value.get("content") if isinstance(value, dict) else value
            elif key == "clean_up_tokenization_spaces":
                clean_up = bool(value)
    return names, clean_up


class HuggingFaceTokenizer(MegatronTokenizer):
    megatron_class_name = "_HuggingFaceTokenizer"

    def __init__(self, tokenizer_model: str, trust_remote_code: bool = False,
                 legacy: bool = False, include_special_tokens: bool = False,
                 use_fast: bool = False):
        # trust_remote_code and use_fast are Megatron-LM's flags; here they only enter the
        # identifiers (no code is loaded, and there is one implementation).
        super().__init__(tokenizer_model)
        self.legacy = legacy
        # Whether the post-processor's tokens (a BOS in front, ...) are added: always in legacy
        # mode (transformers' __call__), on request in current mode.
        self._add_special_tokens = legacy or include_special_tokens
        if not legacy:
            self._set_identifiers(current_identifiers(
                tokenizer_model, vocab_file=None, merges_file=None, additional_special_tokens=[],
                use_fast=use_fast, trust_remote_code=trust_remote_code,
                include_special_tokens=include_special_tokens))
        from tokenizers import Tokenizer

        self._file = _find_tokenizer_file(tokenizer_model)
        try:
            self._tokenizer = Tokenizer.from_file(self._file)
        except Exception as err:
            raise DataError(
                f"--tokenizer-model {tokenizer_model}: could not load {self._file} as a Hugging "
                f"Face tokenizer.json ({err})"
            ) from err
        self._vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        self._inv_vocab = {i: t for t, i in self._vocab.items()}
        names, self._clean_up_spaces = _read_config(os.path.dirname(os.path.abspath(self._file)))
        self._token_names = names
        self._eos = self._id_of("eos_token")
        self._bos = self._id_of("bos_token")
        self._pad = self._id_of("pad_token")
        self._cls, self._sep = self._id_of("cls_token"), self._id_of("sep_token")
        self._mask = self._id_of("mask_token")
        if not legacy:  # megatron-core fills each of bos/cls and eos/sep from the other
            self._bos = self._cls if self._bos is None else self._bos
            self._cls = self._bos if self._cls is None else self._cls
            self._eos = self._sep if self._eos is None else self._eos
        if self._eos is None:
            special = {t.content for t in self._tokenizer.get_added_tokens_decoder().values()
                       if t.special}
            names["eos_token"] = next((t for t in COMMON_EOS_TOKENS if t in special), None)
            self._eos = self._id_of("eos_token")
        if not legacy:
            self._sep = self._eos if self._sep is None else self._sep
        self._word_encoder = None  # made on first use, if exact for this tokenizer
        self._word_encoder_tried = False

    def _id_of(self, key: str) -> Optional[int]:
        token = self._token_names.get(key)
        if token is None:
            return None
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise DataError(
                f"--tokenizer-model {self._file}: the config names {key} {token!r}, which the "
                "tokenizer's vocabulary does not have"
            )
        return token_id

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer.encode(text, add_special_tokens=self._add_special_tokens).ids

    def tokenize_batch(self, texts: List[str]) -> List[List[int]]:
        # A GPT-2-style byte-level BPE file is encoded word by word through a cache, with the
        # same ids (byte_level_words.py); other files, or texts it cannot do, the plain way.
        if not self._word_encoder_tried:
            self._word_encoder_tried = True
            from megatron.core.tokenizers.byte_level_words import ByteLevelWordEncoder

            self._word_encoder = ByteLevelWordEncoder.for_tokenizer(
                self._tokenizer, self._add_special_tokens)
        if self._word_encoder is not None:
            return self._word_encoder.encode_batch(texts)
        from megatron.core.tokenizers.gpt2_bpe import encode_batch_ids

        return encode_batch_ids(self._tokenizer, texts, self._add_special_tokens)

    def detokenize(self, ids: List[int]) -> str:
        text = self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)
        if self._clean_up_spaces:
            text = clean_up_tokenization(text)
        return text

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def decoder(self) -> Dict[int, str]:
        return self._inv_vocab

    @property
    def eod(self) -> Optional[int]:
        return self._eos

    @property
    def eos(self) -> Optional[int]:
        return self._eos

    @property
    def bos(self) -> Optional[int]:
        return self._bos

    @property
    def pad(self) -> Optional[int]:
        return self._pad

    @property
    def cls(self) -> Optional[int]:
        return self._missing("cls") if self.legacy else self._cls

    @property
    def sep(self) -> Optional[int]:
        return self._missing("sep") if self.legacy else self._sep

    @property
    def mask(self) -> Optional[int]:
        return self._missing("mask") if self.legacy else self._mask
