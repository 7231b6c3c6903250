#!/usr/bin/env python
"""Continue a prompt with a GPT model saved by pretrain_gpt.py.

The code is megatron/cli/generate.py; installed, the same command is ``megatron-generate``.
"""
import sys

from megatron.cli.generate import main

if __name__ == "__main__":
    sys.exit(main())
