#!/usr/bin/env python
"""Training throughput on the benchmark shapes, through the real training step.

The code is megatron/cli/benchmark.py; installed, the same command is ``megatron-benchmark``.
"""
import sys

from megatron.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
