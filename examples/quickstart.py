#!/usr/bin/env python
"""Pretrain a small Llama-style GPT end to end on built-in text, then let it complete a prompt.

    python examples/quickstart.py            # a few minutes on 2 CPU cores (or a GPU when present)
    python examples/quickstart.py --short    # under a minute: the same steps, tiny sizes (CI)

The code is megatron/cli/quickstart.py; installed, the same command is ``megatron-quickstart``.
"""
import sys

from megatron.cli.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
