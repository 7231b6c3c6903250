"""Process-wide training state (Megatron's get_args / get_tokenizer / get_timers ...).

Only megatron/training and the entry scripts use these; megatron/core never does.
"""
_ARGS = None
_TOKENIZER = None
_TIMERS = None
_TENSORBOARD_WRITER = None
_WANDB_WRITER = None
_SIGNAL_HANDLER = None


def _check(value, name):
    if value is None:
        raise RuntimeError(f"{name} is not initialized: call initialize_megatron() (or pretrain()) first")
    return value


def get_args():
    return _check(_ARGS, "args")


def set_args(args) -> None:
    global _ARGS
    _ARGS = args


def get_tokenizer():
    return _check(_TOKENIZER, "tokenizer")


def set_tokenizer(tokenizer) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer


def get_timers():
    return _check(_TIMERS, "timers")


def set_timers(timers) -> None:
    global _TIMERS
    _TIMERS = timers


def get_tensorboard_writer():
    """The training writer (TensorBoard and/or W&B), or None on ranks that do not write."""
    return _TENSORBOARD_WRITER


def set_tensorboard_writer(writer) -> None:
    global _TENSORBOARD_WRITER
    _TENSORBOARD_WRITER = writer


def get_wandb_writer():
    return _WANDB_WRITER


def get_signal_handler():
    return _SIGNAL_HANDLER


def set_signal_handler(handler) -> None:
    global _SIGNAL_HANDLER
    _SIGNAL_HANDLER = handler


def get_num_microbatches() -> int:
    from megatron.core.num_microbatches_calculator import get_num_microbatches as _get
    return _get()


def destroy_global_vars() -> None:
    global _ARGS, _TOKENIZER, _TIMERS, _TENSORBOARD_WRITER, _WANDB_WRITER, _SIGNAL_HANDLER
    _ARGS = _TOKENIZER = _TIMERS = _TENSORBOARD_WRITER = _WANDB_WRITER = _SIGNAL_HANDLER = None
