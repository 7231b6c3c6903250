#!/usr/bin/env python
"""Merge all .bin/.idx datasets of a folder into one, in file-name order; see docs/preprocessing.md.

The code is megatron/preprocess/merge_cli.py (``python -m megatron.preprocess.merge_cli``; installed: ``megatron-merge-datasets``).
"""
import sys

from megatron.preprocess.merge_cli import main

if __name__ == "__main__":
    sys.exit(main())
