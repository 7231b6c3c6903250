"""Training-side tokenizer setup: Megatron's ``build_tokenizer(args)`` and vocabulary padding.

The embedding and output layers have ``padded_vocab_size`` rows: the tokenizer's size rounded up
to a multiple of ``--make-vocab-size-divisible-by`` x tensor-parallel size, so each tensor-parallel
shard gets an equal, GPU-friendly slice. The extra rows are never produced by the tokenizer.
"""
import math

from megatron.core.errors import ConfigError
from megatron.core.tokenizers import MegatronTokenizer
from megatron.training.arguments.derived import set_derived
from megatron.core.tokenizers import build_tokenizer as build_tokenizer_from_flags


def vocab_size_with_padding(
    orig_vocab_size: int, make_vocab_size_divisible_by: int, tensor_model_parallel_size: int
) -> int:
    """The smallest multiple of divisible_by x TP that holds `orig_vocab_size` ids."""
    if make_vocab_size_divisible_by < 1 or tensor_model_parallel_size < 1:
        raise ValueError(
            "--make-vocab-size-divisible-by and --tensor-model-parallel-size must be >= 1, got "
            f"{make_vocab_size_divisible_by} and {tensor_model_parallel_size}"
        )
    multiple = make_vocab_size_divisible_by * tensor_model_parallel_size
    return int(math.ceil(orig_vocab_size / multiple) * multiple)


def _is_rank_zero(args) -> bool:
    rank = args.rank
    if rank is None:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return rank == 0


# Which families take the Hugging Face flags (megatron-core builds these through transformers
# and writes the flags into their identifiers).
_HF_BACKED = ("HuggingFaceTokenizer", "GPT2BPETokenizer", "BertWordPieceLowerCase",
              "BertWordPieceCase")


def tokenizer_options(args) -> dict:
    """The family options Megatron's flags on `args` set, beyond files, sizes and the mode."""
    tokenizer_type = args.tokenizer_type
    if tokenizer_type not in _HF_BACKED:
        return {}
    options = {"trust_remote_code": bool(args.trust_remote_code),
               "use_fast": bool(args.tokenizer_hf_use_fast)}
    if tokenizer_type == "HuggingFaceTokenizer":
        options["include_special_tokens"] = bool(
            args.tokenizer_hf_include_special_tokens)
    return options


def build_tokenizer(args, **kwargs) -> MegatronTokenizer:
    """The tokenizer Megatron's flags on `args` describe; sets ``args.padded_vocab_size``.

    ``--legacy-tokenizer`` picks Megatron-LM's older ids; tools/preprocess_data.py builds its
    tokenizer here too, so both sides give the same ids and eod for the same flags.

    ``padded_vocab_size`` is kept when already set (Megatron: a checkpoint may have set it).
    """
    tokenizer_type = args.tokenizer_type
    if tokenizer_type is None:
        raise ConfigError("--tokenizer-type is required to build a tokenizer (for example "
                          "GPT2BPETokenizer, HuggingFaceTokenizer, SentencePieceTokenizer)")
    verbose = _is_rank_zero(args)
    if verbose:
        print(f"> building {tokenizer_type} tokenizer ...", flush=True)
    tokenizer = build_tokenizer_from_flags(
        tokenizer_type,
        vocab_file=args.vocab_file,
        merge_file=args.merge_file,
        tokenizer_model=args.tokenizer_model,
        vocab_size=args.vocab_size,
        vocab_extra_ids=args.vocab_extra_ids or 0,
        legacy=bool(args.legacy_tokenizer),
        **{**tokenizer_options(args), **kwargs},
    )
    if args.padded_vocab_size is None:  # a checkpoint's (--use-checkpoint-args) wins
        set_derived(args, "padded_vocab_size", _vocab_size_with_padding(tokenizer.vocab_size, args, verbose))
    return tokenizer


def _vocab_size_with_padding(orig_vocab_size: int, args, logging_enabled: bool = True) -> int:
    """Megatron-LM's name and signature (conversion scripts call it): pads with the sizes on
    `args` and prints Megatron's line on rank 0."""
    padded = vocab_size_with_padding(
        orig_vocab_size,
        args.make_vocab_size_divisible_by,
        args.tensor_model_parallel_size,
    )
    if logging_enabled and _is_rank_zero(args):
        print(f" > padded vocab (size: {orig_vocab_size}) with {padded - orig_vocab_size} "
              f"dummy tokens (new size: {padded})", flush=True)
    return padded
