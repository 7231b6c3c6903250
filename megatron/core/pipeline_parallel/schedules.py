"""Forward/backward schedules over micro-batches (Megatron Core's ``get_forward_backward_func``).

The contract: ``forward_step_func(data_iterator, model)`` returns ``(output_tensor, loss_func)``;
``loss_func(output_tensor)`` returns ``(loss, num_tokens, reporting_dict)`` or the legacy
``(loss, reporting_dict)``. What runs around forward and backward comes from ``hooks``
(:class:`~megatron.core.pipeline_parallel.hooks.ScheduleHooks`), or from the model config's
Megatron fields when no hooks are given.

Loss normalisation (the one place that defines it)
--------------------------------------------------
Let a step have M micro-batches on each of D data-parallel (x context-parallel) ranks, and let
micro-batch m have n_m loss tokens (``num_tokens``) and loss L_m as ``loss_func`` returns it.

* Without per-token loss (``calculate_per_token_loss`` False, the default):
  - 3-tuple ``loss_func``: L_m is a *sum* over the micro-batch's tokens; backward runs on
    L_m / max(n_m, 1) / M, i.e. the per-micro-batch token mean, averaged over micro-batches.
  - legacy 2-tuple ``loss_func``: L_m is already the micro-batch's mean; backward runs on
    L_m * cp_size / M.
  Then DDP averages the gradients over the D data-parallel ranks (divides by D, or NCCL's AVG).
  The gradient is that of mean over ranks of mean over micro-batches of the per-micro-batch mean.
* With per-token loss (``calculate_per_token_loss`` True): backward runs on L_m as is (a sum over
  tokens); the schedule adds up N_local = sum_m n_m and passes it to ``finalize_grads``; DDP sums
  (does not average) over data-parallel ranks, and finalize_model_grads divides every gradient by
  the global token count N = sum over ranks of N_local. The gradient is that of the global
  per-token mean, whatever the split into micro-batches and ranks.
* ``scale_loss`` (the fp16 loss scale) multiplies the loss just before backward; the optimizer
  divides the gradients by the same scale before clipping and stepping.
* The reporting dicts are returned unchanged, one per micro-batch; reducing them for logging is
  the caller's job.
* Under pipeline parallelism only the last stage (its last model chunk, when interleaved) applies
  ``loss_func`` and returns the dicts ([] elsewhere); n_m and N_local are 0 on the other stages, so
  the token count that finalize_grads receives is only meaningful on the last stage.

Schedules: forward_backward_no_pipelining (one stage), forward_backward_pipelining_without_interleaving
(1F1B, schedule_1f1b.py) and forward_backward_pipelining_with_interleaving (virtual stages,
schedule_interleaved.py with interleaved_plan.py); get_forward_backward_func picks one, and
expected_bubble_fraction says how idle a stage is under them.
"""
import contextlib
from typing import Iterator, List, Optional, Union

from megatron.core import parallel_state
from megatron.core.errors import ConfigError
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.pipeline_parallel.interleaved_plan import get_schedule_table
from megatron.core.pipeline_parallel.schedule_1f1b import forward_backward_pipelining_without_interleaving
from megatron.core.pipeline_parallel.schedule_common import (
    add_tokens, finalize, get_tensor_shapes, new_token_count, output_for_backward)
from megatron.core.pipeline_parallel.schedule_interleaved import (
    check_interleaved_schedule, forward_backward_pipelining_with_interleaving)
from megatron.core.pipeline_parallel.steps import backward_step, check_first_val_step, forward_step
from megatron.core.utils import get_model_config, get_pg_size, no_effect, reject_unsupported

__all__ = ["backward_step", "check_first_val_step", "check_interleaved_schedule", "expected_bubble_fraction", "forward_backward_no_pipelining",
           "forward_backward_pipelining_with_interleaving", "forward_backward_pipelining_without_interleaving",
           "forward_step", "get_forward_backward_func", "get_schedule_table", "get_tensor_shapes", "output_for_backward"]

_PIPELINE_ONLY = "shapes and channels of activations sent between pipeline stages: nothing is sent without pipelining"


def forward_backward_no_pipelining(*, forward_step_func, data_iterator: Union[Iterator, List[Iterator]],
                                   model, num_microbatches: int, seq_length: int, micro_batch_size: int,
                                   decoder_seq_length: Optional[int] = None, forward_only: bool = False,
                                   collect_non_loss_data: bool = False, first_val_step: Optional[bool] = None,
                                   adjust_tensor_shapes_fn=None, p2p_communicator=None, pg_collection=None,
                                   force_all_reduce: Optional[bool] = False, hooks: Optional[ScheduleHooks] = None):
    """All micro-batches on one stage: forward and backward each in turn, gradients accumulating.

    ``hooks`` (ours) replace the model config's grad_scale_func / finalize_model_grads_func /
    no_sync_func; ``pg_collection`` is handed to ``finalize_grads``.
    """
    no_effect(_PIPELINE_ONLY, seq_length, micro_batch_size, decoder_seq_length, p2p_communicator)
    reject_unsupported("forward_backward_no_pipelining", adjust_tensor_shapes_fn=adjust_tensor_shapes_fn)
    if isinstance(model, list):
        if len(model) != 1:
            raise ValueError("without pipeline parallelism the model must be a single chunk")
        model = model[0]
    if isinstance(data_iterator, list):
        data_iterator = data_iterator[0]
    config = get_model_config(model)
    hooks = hooks if hooks is not None else ScheduleHooks.from_config(config)
    no_sync = hooks.no_sync or contextlib.nullcontext
    cp_size = get_pg_size(getattr(pg_collection, "cp", None)) if pg_collection is not None else None
    forward_data_store: List = []
    total_num_tokens = new_token_count()
    if config.timers is not None:  # a Megatron-style caller's timers (the driver times the step itself)
        config.timers("forward-backward", log_level=1).start(barrier=config.barrier_with_L1_time)

    def one(i: int):
        nonlocal total_num_tokens
        first = check_first_val_step(first_val_step, forward_only, i == 0)
        output_tensor, num_tokens = forward_step(
            forward_step_func, data_iterator, model, num_microbatches, None, forward_data_store, config,
            cp_size, collect_non_loss_data, is_first_microbatch=first, current_microbatch=i, is_last_stage=True)
        total_num_tokens = add_tokens(total_num_tokens, num_tokens)
        if not forward_only:
            backward_step(None, output_tensor, None, None, config, hooks)

    with no_sync():
        for i in range(num_microbatches - 1):
            one(i)
    one(num_microbatches - 1)
    if not forward_only:
        finalize(hooks, [model], total_num_tokens, config, pg_collection, force_all_reduce)
    if config.timers is not None:
        config.timers("forward-backward").stop()
    return forward_data_store


def get_forward_backward_func(pp_size: Optional[int] = None, vp_size: Optional[int] = None):
    """The schedule for a pipeline layout (``pp_size``/``vp_size`` default to the global layout's):
    no pipelining for one stage, else the interleaved schedule when there are virtual stages
    (``vp_size`` not None, as Megatron Core decides), else 1F1B."""
    pp = pp_size or parallel_state.get_pipeline_model_parallel_world_size()
    vp = vp_size if vp_size is not None else parallel_state.get_virtual_pipeline_model_parallel_world_size()
    if pp > 1:
        return (forward_backward_pipelining_with_interleaving if vp is not None
                else forward_backward_pipelining_without_interleaving)
    return forward_backward_no_pipelining


def expected_bubble_fraction(pp_size: int, num_microbatches: int, vp_size: Optional[int] = None) -> float:
    """The share of a step each pipeline stage sits idle: (p - 1) / (v m + p - 1).

    With p stages, m micro-batches and v virtual stages per rank (1 without interleaving), a stage
    works v m forward+backward units of 1/v of its layers and waits for the pipeline to fill and
    drain for (p - 1) such units (forward and backward equally long). 0 for p = 1.
    """
    v = vp_size or 1
    if pp_size < 1 or num_microbatches < 1 or v < 1:
        raise ConfigError(f"expected_bubble_fraction needs positive sizes, got pp_size={pp_size}, "
                          f"num_microbatches={num_microbatches}, vp_size={vp_size}")
    return (pp_size - 1) / (v * num_microbatches + pp_size - 1)
