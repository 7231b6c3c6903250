#!/usr/bin/env python
"""Gather the Python standard library's own text into a jsonl corpus, offline.

The code is megatron/cli/corpus.py; installed, the same command is ``megatron-corpus``.
"""
import sys

from megatron.cli.corpus import main

if __name__ == "__main__":
    sys.exit(main())
