"""Tokenizers behind one factory, selected by Megatron's --tokenizer-type.

    from megatron.core.tokenizers import build_tokenizer
    tok = build_tokenizer("GPT2BPETokenizer", vocab_file="vocab.json", merge_file="merges.txt")

``legacy=True`` (``--legacy-tokenizer``) gives Megatron-LM's older ids instead of its current
ones; docs/data.md has the table of what differs per family.

The family classes are importable from here too; they load lazily so that importing this
package does not import ``tokenizers`` or ``sentencepiece``.
"""
import importlib

from megatron.core.tokenizers.base import MegatronTokenizer
from megatron.core.tokenizers.factory import TOKENIZER_TYPES, build_tokenizer

_CLASS_MODULES = {
    "GPT2BPETokenizer": "gpt2_bpe",
    "HuggingFaceTokenizer": "huggingface",
    "SentencePieceTokenizer": "sentencepiece",
    "GPTSentencePieceTokenizer": "sentencepiece",
    "Llama2Tokenizer": "sentencepiece",
    "BertWordPieceTokenizer": "bert_wordpiece",
    "NullTokenizer": "null",
    "ByteTokenizer": "byte",
}

__all__ = ["MegatronTokenizer", "build_tokenizer", "TOKENIZER_TYPES", *_CLASS_MODULES]


def __getattr__(name):
    if name in _CLASS_MODULES:
        module = importlib.import_module(f"megatron.core.tokenizers.{_CLASS_MODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
