"""The training driver (reads the parsed arguments; megatron/core never does)."""
from megatron.training.global_vars import get_args, get_timers, get_tokenizer  # noqa: F401


def pretrain(*args, **kwargs):
    from megatron.training.training import pretrain as _pretrain
    return _pretrain(*args, **kwargs)


def print_rank_0(message: str) -> None:
    from megatron.training.utils import print_rank_0 as _print
    _print(message)
