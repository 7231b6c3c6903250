#!/usr/bin/env python
"""Train a tokenizer (byte-level BPE or SentencePiece) on jsonl text.

The code is megatron/cli/train_tokenizer.py; installed, the same command is ``megatron-train-tokenizer``.
"""
import sys

from megatron.cli.train_tokenizer import main

if __name__ == "__main__":
    sys.exit(main())
