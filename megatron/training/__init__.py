"""The training driver (reads the parsed arguments; megatron/core never does).

Megatron-LM's names importable from here: get_args, get_timers, get_tokenizer, get_signal_handler,
get_tensorboard_writer, print_rank_0, pretrain, get_model, initialize_megatron. The heavier ones load
on first use, so that ``import megatron.training`` stays cheap for tools.
"""
import importlib

from megatron.training.global_vars import (  # noqa: F401
    get_args,
    get_signal_handler,
    get_tensorboard_writer,
    get_timers,
    get_tokenizer,
)

_LAZY = {
    "pretrain": "megatron.training.training",
    "get_model": "megatron.training.model_setup",
    "setup_model_and_optimizer": "megatron.training.model_setup",
    "initialize_megatron": "megatron.training.initialize",
    "print_rank_0": "megatron.training.utils",
    "print_rank_last": "megatron.training.utils",
    "get_train_valid_test_num_samples": "megatron.training.data_iterators",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'megatron.training' has no attribute {name!r}")
