"""Merge all .bin/.idx datasets of a folder into one, in file-name order (Megatron-LM's flags).

    python tools/merge_datasets.py --input shards/ --output-prefix merged_text_document
"""

import argparse
import os
import sys

# Runs from a checkout without installing, as Megatron's tools do.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def main(argv=None) -> int:
    from megatron.preprocess.merge import merge_datasets

    args = build_parser().parse_args(argv)
    try:
        merged = merge_datasets(args.input, args.output_prefix, multimodal=args.multimodal)
    except (OSError, ValueError) as err:
        print(f"merge_datasets.py: error: {err}", file=sys.stderr)
        return 1
    print(f"Merged {len(merged)} datasets into {args.output_prefix}.bin/.idx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
