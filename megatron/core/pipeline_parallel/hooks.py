"""ScheduleHooks: what the schedules call around forward and backward, passed to the schedule.

Megatron Core keeps these callables on the model config (``grad_scale_func``,
``finalize_model_grads_func``, ``no_sync_func``, ``grad_sync_func``, ``param_sync_func``); the
schedules here take them as an argument instead (``hooks=``), and read the config's fields only
when no hooks are given, for Megatron-style callers.
"""
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch


@dataclass
class ScheduleHooks:
    """Every field is optional; None means "nothing to do".

    scale_loss(loss) -> loss: multiply the loss before backward (the fp16 loss scale).
    finalize_grads(model_chunks, num_tokens, pg_collection=..., force_all_reduce=...): after the
        last backward; reduce gradients (finalize_model_grads). num_tokens is the step's token
        count with per-token losses, else None; the keywords are passed only when the schedule
        was given them.
    no_sync() -> context manager: suspends gradient reduction for all but the last micro-batch's
        backward (under interleaving: all but each model chunk's last; one context for all chunks).
    grad_sync(params): a chunk's last backward is done, its gradient reduction may start (the 1F1B
        and interleaved schedules call it; the no-pipelining one does not, as in Megatron Core).
    param_sync(params): a chunk's first forward is next (only the interleaved schedule calls it,
        as in Megatron Core; never on a forward-only pass).
    finalize_grads under pipeline parallelism: called on every stage with that stage's model
        chunks; num_tokens is the stage's own count, which is 0 except on the last stage.
    """

    scale_loss: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    finalize_grads: Optional[Callable] = None
    no_sync: Optional[Callable[[], ContextManager]] = None
    grad_sync: Optional[Callable] = None
    param_sync: Optional[Callable] = None

    @classmethod
    def from_config(cls, config) -> "ScheduleHooks":
        """The hooks a Megatron Core caller stored on the model config."""
        return cls(scale_loss=getattr(config, "grad_scale_func", None),
                   finalize_grads=getattr(config, "finalize_model_grads_func", None),
                   no_sync=getattr(config, "no_sync_func", None),
                   grad_sync=getattr(config, "grad_sync_func", None),
                   param_sync=getattr(config, "param_sync_func", None))
