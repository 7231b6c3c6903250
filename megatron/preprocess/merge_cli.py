"""Merge all .bin/.idx datasets of a folder into one, in file-name order (Megatron-LM's flags).

    python tools/merge_datasets.py --input shards/ --output-prefix merged_text_document

Bad input ends with one line, `merge_datasets.py: error: ...`, and status 2.
"""
import argparse
import sys
from typing import List, Optional

from megatron.preprocess.exit_status import run_command

PROG = "merge_datasets.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    group = parser.add_argument_group(title="input data")
    group.add_argument("--input", type=str, required=True,
                       help="Folder holding the datasets (prefix.bin + prefix.idx) to merge.")
    group = parser.add_argument_group(title="output data")
    group.add_argument("--output-prefix", type=str, required=True,
                       help="Output path prefix, without .bin/.idx.")
    group = parser.add_argument_group(title="miscellaneous")
    group.add_argument("--multimodal", action="store_true",
                       help="The datasets carry one mode per sequence (multimodal index).")
    return parser


def _main(argv: Optional[List[str]]) -> int:
    from megatron.preprocess.merge import merge_datasets

    args = build_parser().parse_args(argv)
    merged = merge_datasets(args.input, args.output_prefix, multimodal=args.multimodal,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"Merged {len(merged)} datasets into {args.output_prefix}.bin/.idx")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """The exit status (0; 2 for bad input, printed as one line; 130 for Ctrl-C), returned."""
    return run_command(_main, PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
