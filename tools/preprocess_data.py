#!/usr/bin/env python
"""Tokenize jsonl documents into Megatron .bin/.idx datasets; see docs/preprocessing.md.

The code is megatron/preprocess/preprocess_data.py (installed: ``megatron-preprocess-data``).
"""
import sys

from megatron.preprocess.preprocess_data import main

if __name__ == "__main__":
    sys.exit(main())
