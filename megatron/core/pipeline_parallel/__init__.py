"""Schedules over micro-batches, and the hooks they call (ScheduleHooks)."""
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.pipeline_parallel.schedules import get_forward_backward_func

__all__ = ["ScheduleHooks", "get_forward_backward_func"]
