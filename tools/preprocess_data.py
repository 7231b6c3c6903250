#!/usr/bin/env python
"""Tokenize jsonl documents into Megatron .bin/.idx datasets; see docs/preprocessing.md.

The code is megatron/preprocess/cli.py (``python -m megatron.preprocess.cli``; installed: ``megatron-preprocess-data``).
"""
import sys

from megatron.preprocess.cli import main

if __name__ == "__main__":
    sys.exit(main())
