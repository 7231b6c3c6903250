"""Megatron Core's old home of the tokenizer base class, kept for scripts that import it here."""

from megatron.core.tokenizers.base import MegatronTokenizer

# Megatron Core 0.15 renamed its class so; both names are the same base class here.
MegatronLegacyTokenizer = MegatronTokenizer

__all__ = ["MegatronTokenizer", "MegatronLegacyTokenizer"]
