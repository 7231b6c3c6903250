#!/usr/bin/env python
"""Pretrain a GPT model with Megatron-LM's flags (GPT-2 or Llama style).

    torchrun --nproc-per-node 2 pretrain_gpt.py --tensor-model-parallel-size 2 --num-layers 12 ...
    python pretrain_gpt.py --config examples/gpt_tiny.yaml

The recipe (model provider, get_batch, loss_func, forward_step, datasets provider) lives in
megatron/training/recipes/gpt.py; installed, the same command is ``megatron-pretrain-gpt``.
"""
from megatron.training import pretrain  # noqa: F401  (Megatron scripts call pretrain_gpt.pretrain)
from megatron.training.recipes.gpt import (  # noqa: F401  (importable from here, as in Megatron-LM)
    forward_step,
    get_batch,
    loss_func,
    main,
    model_provider,
    train_valid_test_datasets_provider,
)

if __name__ == "__main__":
    main()
