"""build_tokenizer: one entry point from Megatron's tokenizer flags to a tokenizer object.

``legacy=False`` (the default) gives the ids of Megatron-LM's current tokenizers, ``legacy=True``
those of its older classes (``--legacy-tokenizer``); docs/data.md says what differs.

Each family's module is imported only when that type is asked for, so a program that never
tokenizes does not pay for importing ``tokenizers`` or ``sentencepiece``.
"""
import os
from typing import Optional

from megatron.core.errors import ConfigError, MissingFileError
from megatron.core.tokenizers.base import MegatronTokenizer

TOKENIZER_TYPES = (
    "GPT2BPETokenizer",
    "HuggingFaceTokenizer",
    "SentencePieceTokenizer",
    "GPTSentencePieceTokenizer",
    "Llama2Tokenizer",
    "BertWordPieceLowerCase",
    "BertWordPieceCase",
    "NullTokenizer",
    "ByteTokenizer",
)

# Megatron-LM types we do not provide, with what to use instead.
UNSUPPORTED_TYPES = {
    "TikTokenizer": "convert the tiktoken vocabulary to a Hugging Face tokenizer.json and use "
                    "HuggingFaceTokenizer",
    "MultimodalTokenizer": "multimodal training is not supported",
    "NullMultimodalTokenizer": "multimodal training is not supported",
    "SFTTokenizer": "use HuggingFaceTokenizer and apply the chat template before preprocessing",
}


def _require_file(path: Optional[str], flag: str, expected: str, tokenizer_type: str) -> str:
    """`path`, after checking it was given and exists; the error names the flag and file."""
    if path is None:
        raise ConfigError(f"--tokenizer-type {tokenizer_type} needs {flag} ({expected})")
    if not os.path.exists(path):
        raise MissingFileError(f"{flag}: expected {expected}, but {path} does not exist")
    if os.path.isdir(path):
        raise MissingFileError(f"{flag}: expected {expected}, but {path} is a folder; pass "
                               "the file inside it")
    return path


def build_tokenizer(
    tokenizer_type: str,
    *,
    vocab_file: Optional[str] = None,
    merge_file: Optional[str] = None,
    tokenizer_model: Optional[str] = None,
    vocab_size: Optional[int] = None,
    vocab_extra_ids: int = 0,
    legacy: bool = False,
    **kw,
) -> MegatronTokenizer:
    """The tokenizer `tokenizer_type` names, from the files Megatron's flags point at.

    Extra keyword arguments go to the family's constructor (``trust_remote_code``,
    ``use_fast`` and, for HuggingFaceTokenizer, ``include_special_tokens``); a family that does
    not take one raises TypeError. ByteTokenizer (ours) is the same in both modes.
    """
    t = tokenizer_type
    vocab_extra_ids = int(vocab_extra_ids or 0)
    legacy = bool(legacy)
    if t == "GPT2BPETokenizer":
        from megatron.core.tokenizers.gpt2_bpe import GPT2BPETokenizer

        return GPT2BPETokenizer(
            _require_file(vocab_file, "--vocab-file", "a GPT-2 vocab.json", t),
            _require_file(merge_file, "--merge-file", "a GPT-2 merges.txt", t),
            legacy=legacy,
            **kw,
        )
    if t == "HuggingFaceTokenizer":
        from megatron.core.tokenizers.huggingface import HuggingFaceTokenizer

        if tokenizer_model is None:
            raise ConfigError(f"--tokenizer-type {t} needs --tokenizer-model (a tokenizer.json "
                              "file or a folder holding one)")
        return HuggingFaceTokenizer(tokenizer_model, legacy=legacy, **kw)
    if t in ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"):
        from megatron.core.tokenizers import sentencepiece as sp_family

        model = _require_file(tokenizer_model, "--tokenizer-model", "a SentencePiece .model", t)
        if t == "SentencePieceTokenizer":
            return sp_family.SentencePieceTokenizer(model, vocab_extra_ids=vocab_extra_ids,
                                                    legacy=legacy, **kw)
        return getattr(sp_family, t)(model, legacy=legacy, **kw)
    if t in ("BertWordPieceLowerCase", "BertWordPieceCase"):
        from megatron.core.tokenizers.bert_wordpiece import BertWordPieceTokenizer

        return BertWordPieceTokenizer(
            _require_file(vocab_file, "--vocab-file", "a BERT vocab.txt", t),
            lower_case=(t == "BertWordPieceLowerCase"),
            vocab_extra_ids=vocab_extra_ids,
            legacy=legacy,
            **kw,
        )
    if t == "NullTokenizer":
        from megatron.core.tokenizers.null import NullTokenizer

        if vocab_size is None:
            raise ConfigError("--tokenizer-type NullTokenizer needs --vocab-size (the number of "
                              "token ids before eod)")
        return NullTokenizer(vocab_size, legacy=legacy, **kw)
    if t == "ByteTokenizer":
        from megatron.core.tokenizers.byte import ByteTokenizer

        return ByteTokenizer(**kw)
    if t in UNSUPPORTED_TYPES:
        raise ConfigError(f"--tokenizer-type {t} is not supported here: {UNSUPPORTED_TYPES[t]}")
    raise ConfigError(
        f"--tokenizer-type {t!r} is unknown; expected one of {', '.join(TOKENIZER_TYPES)}"
    )
