"""tools/preprocess_data.py's command line: Megatron's flags, the tokenizer flags exactly as
training declares them, and our few extras (--skip-bad-lines, --chunk-bytes, --allow-empty)."""

import argparse
import sys
from types import SimpleNamespace

from megatron.core.errors import ConfigError
from megatron.preprocess.pipeline import DEFAULT_CHUNK_BYTES, PreprocessConfig


# What training's tokenizer setup reads beyond the tokenizer flags, fixed as Megatron's preprocessing
# has them: no sentinels (they only extend the vocabulary at training time), no vocabulary padding
# beyond 128, one tensor-parallel rank, and a rank other than 0 so that building it prints nothing.
_FIXED_FOR_THE_TOKENIZER = dict(vocab_extra_ids=0, rank=1, make_vocab_size_divisible_by=128,
                                tensor_model_parallel_size=1, padded_vocab_size=None)


def build_parser() -> argparse.ArgumentParser:
    from megatron.training.arguments import add_tokenizer_args

    parser = argparse.ArgumentParser(
        description="Tokenize jsonl text into Megatron .bin/.idx datasets "
        "({output_prefix}_{key}_{document|sentence}.bin/.idx)",
        allow_abbrev=False,
    )
    parser = add_tokenizer_args(parser)

    group = parser.add_argument_group(title="input data")
    group.add_argument("--input", type=str, required=True,
                       help="Input jsonl file (.gz allowed); with --partitions > 1, a glob of them.")
    group.add_argument("--json-keys", nargs="+", default=["text"],
                       help="Keys of the json objects to tokenize; one output dataset per key.")
    group.add_argument("--split-sentences", action="store_true",
                       help="Split documents into sentences (NLTK punkt), one sequence each.")
    group.add_argument("--keep-newlines", action="store_true",
                       help="Keep the newlines between sentences when splitting.")

    group = parser.add_argument_group(title="tokenization process")
    group.add_argument("--append-eod", action="store_true",
                       help="Append the tokenizer's eod token to the end of each document.")
    group.add_argument("--lang", type=str, default="english",
                       help="Language of the NLTK punkt model for --split-sentences.")

    group = parser.add_argument_group(title="output data")
    group.add_argument("--output-prefix", type=str, required=True,
                       help="Output path prefix, without the _{key}_{level}.bin/.idx suffix.")

    group = parser.add_argument_group(title="runtime")
    group.add_argument("--workers", type=int, required=True,
                       help="Worker processes that tokenize (one core each); a multiple of --partitions.")
    group.add_argument("--partitions", type=int, default=1,
                       help="Megatron's file partitions: documents are dealt round-robin into this "
                            "many partitions whose outputs are concatenated in order; --input is a glob.")
    group.add_argument("--keep-sequential-samples", action="store_true",
                       help="With --partitions: contiguous partitions, so the input order is kept.")
    group.add_argument("--log-interval", type=int, default=1000,
                       help="Print docs/s, MB/s, progress and ETA every this many documents.")
    group.add_argument("--find-optimal-num-workers", action="store_true",
                       help="Not supported: use tools/bench_preprocess.py to compare worker counts.")
    group.add_argument("--workers-to-check", nargs="+", type=int, default=[16, 32, 64],
                       help="Only with --find-optimal-num-workers (not supported).")
    group.add_argument("--max-documents", type=int, default=100_000,
                       help="Only with --find-optimal-num-workers (not supported).")
    group.add_argument("--performance-dir", type=str, default=None,
                       help="Only with --find-optimal-num-workers (not supported).")
    group.add_argument("--skip-bad-lines", action="store_true",
                       help="Skip (and count) lines that are not valid JSON objects with every "
                            "--json-keys key, instead of stopping at the first one.")
    group.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES,
                       help="Bytes of input text sent to a worker per task.")
    group.add_argument("--allow-empty", action="store_true",
                       help="(megatron-lite) Write a valid empty dataset when the input holds no "
                            "document, instead of stopping with an error.")
    return parser


def _refuse_unsupported_tokenizer_values(args) -> None:
    from megatron.training.arguments.groups import options_in_group

    for option in options_in_group("tokenizer"):
        value = getattr(args, option.dest, None)
        if option.rejects(value):
            why = option.supported_text or option.note or "not supported"
            raise ConfigError(f"{option.primary} {value}: {why}")


def parse_preprocess_args(argv=None) -> SimpleNamespace:
    """The parsed namespace, with the tokenizer settings Megatron fixes for preprocessing."""
    args = build_parser().parse_args(argv)
    if args.find_optimal_num_workers:
        raise ConfigError(
            "--find-optimal-num-workers is not supported; run tools/bench_preprocess.py with "
            "several --workers values to compare them"
        )
    if args.tokenizer_type is None:
        raise ConfigError("--tokenizer-type is required (e.g. GPT2BPETokenizer)")
    _refuse_unsupported_tokenizer_values(args)
    if args.tokenizer_type.lower().startswith("bert") and not args.split_sentences:
        print("note: a BERT tokenizer without --split-sentences writes one sequence per document; "
              "BERT pretraining expects sentences", file=sys.stderr)
    if args.vocab_extra_ids:
        # Megatron's preprocessing tokenizes without sentinels (they only extend the vocabulary
        # at training time); honouring the flag here would change the ids, so say it is ignored.
        print(f"note: --vocab-extra-ids {args.vocab_extra_ids} is ignored by preprocessing, as in "
              "Megatron-LM; pass it to training", file=sys.stderr)
    return argparse.Namespace(**{**vars(args), **_FIXED_FOR_THE_TOKENIZER})


def config_from_args(args) -> PreprocessConfig:
    return PreprocessConfig(
        input=args.input,
        output_prefix=args.output_prefix,
        json_keys=list(args.json_keys),
        split_sentences=args.split_sentences,
        keep_newlines=args.keep_newlines,
        lang=args.lang,
        append_eod=args.append_eod,
        workers=args.workers,
        partitions=args.partitions,
        keep_sequential_samples=args.keep_sequential_samples,
        log_interval=args.log_interval,
        skip_bad_lines=args.skip_bad_lines,
        chunk_bytes=args.chunk_bytes,
        allow_empty=args.allow_empty,
    )


class TokenizerFromArgs:
    """Builds the tokenizer from the parsed flags (picklable, for spawned workers), through the
    same function training uses, so --legacy-tokenizer and the other tokenizer flags give the
    same ids and eod on both sides."""

    def __init__(self, args):
        self.args = args

    def __call__(self):
        from megatron.training.tokenizer import build_tokenizer

        return build_tokenizer(self.args)
