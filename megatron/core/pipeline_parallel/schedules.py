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
"""
import contextlib
from typing import Iterator, List, Optional, Union

import torch

from megatron.core import device, parallel_state
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.utils import get_model_config, get_pg_size, no_effect, reject_unsupported

_PIPELINE_ONLY = "shapes and channels of activations sent between pipeline stages: nothing is sent without pipelining"


def _set_input_tensor(model, input_tensor):
    target = model
    while not hasattr(target, "set_input_tensor") and hasattr(target, "module"):
        target = target.module
    if hasattr(target, "set_input_tensor"):
        target.set_input_tensor(input_tensor)


def forward_step(forward_step_func, data_iterator, model, num_microbatches: int, input_tensor,
                 forward_data_store: List, config, cp_group_size: Optional[int] = None,
                 collect_non_loss_data: bool = False, checkpoint_activations_microbatch: Optional[bool] = None,
                 is_first_microbatch: bool = False, current_microbatch: Optional[int] = None,
                 vp_stage: Optional[int] = None, is_last_stage: Optional[bool] = None):
    """Run one micro-batch forward; on the last stage apply the loss function (see the module
    docstring for how the loss is normalised). Returns (output_tensor, num_tokens)."""
    reject_unsupported("forward_step", checkpoint_activations_microbatch=checkpoint_activations_microbatch)
    no_effect("only MoE routing statistics record the micro-batch index", current_microbatch)
    if cp_group_size is None:
        cp_group_size = parallel_state.get_context_parallel_world_size()
    if is_last_stage is None:
        is_last_stage = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
    if is_first_microbatch and hasattr(model, "set_is_first_microbatch"):
        model.set_is_first_microbatch()
    _set_input_tensor(model, input_tensor)
    output_tensor, loss_func = forward_step_func(data_iterator, model)
    num_tokens = torch.tensor(0, dtype=torch.int)
    if is_last_stage:
        if collect_non_loss_data:
            forward_data_store.append(loss_func(output_tensor, non_loss_data=True))
            return output_tensor, num_tokens
        outputs = loss_func(output_tensor)
        if len(outputs) == 3:
            output_tensor, num_tokens, loss_reduced = outputs
            if not config.calculate_per_token_loss:
                output_tensor = output_tensor / num_tokens.clamp(min=1)
                output_tensor = output_tensor / num_microbatches
        elif len(outputs) == 2:
            output_tensor, loss_reduced = outputs
            output_tensor = output_tensor * cp_group_size / num_microbatches
        else:
            raise ValueError("loss_func must return (loss, num_tokens, dict) or (loss, dict), "
                             f"got a tuple of {len(outputs)}")
        forward_data_store.append(loss_reduced)
    return output_tensor, num_tokens


def backward_step(input_tensor, output_tensor, output_tensor_grad, model_type, config,
                  hooks: Optional[ScheduleHooks] = None):
    """Backward of one micro-batch; returns the gradient of ``input_tensor`` (None on the first stage).

    On the last stage (``output_tensor_grad`` None) the loss is first scaled by ``hooks.scale_loss``.
    """
    no_effect("encoder-decoder models are not supported: one model type", model_type)
    hooks = hooks if hooks is not None else ScheduleHooks.from_config(config)
    if input_tensor is not None:
        input_tensor.retain_grad()
    if output_tensor_grad is None and hooks.scale_loss is not None:
        output_tensor = hooks.scale_loss(output_tensor)
    torch.autograd.backward(output_tensor, grad_tensors=output_tensor_grad)
    return input_tensor.grad if input_tensor is not None else None


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
    total_num_tokens = torch.zeros((), dtype=torch.int, device=device.current_device())
    if config.timers is not None:  # a Megatron-style caller's timers (the driver times the step itself)
        config.timers("forward-backward", log_level=1).start(barrier=config.barrier_with_L1_time)

    def one(i: int):
        nonlocal total_num_tokens
        # Megatron's rule: on a forward-only pass, first_val_step says whether this step's first
        # micro-batch counts as first (Transformer Engine refreshes cached fp8 weights then).
        first = i == 0 and (bool(first_val_step) if first_val_step is not None and forward_only else True)
        output_tensor, num_tokens = forward_step(
            forward_step_func, data_iterator, model, num_microbatches, None, forward_data_store, config,
            cp_size, collect_non_loss_data, is_first_microbatch=first, current_microbatch=i, is_last_stage=True)
        total_num_tokens = total_num_tokens + torch.as_tensor(num_tokens, device=total_num_tokens.device).to(torch.int)
        if not forward_only:
            backward_step(None, output_tensor, None, None, config, hooks)

    with no_sync():
        for i in range(num_microbatches - 1):
            one(i)
    one(num_microbatches - 1)
    if not forward_only and hooks.finalize_grads is not None:
        # The keyword arguments are passed only when set, so (model, num_tokens) callables keep working.
        extra = {"pg_collection": pg_collection} if pg_collection is not None else {}
        if force_all_reduce:
            extra["force_all_reduce"] = force_all_reduce
        hooks.finalize_grads([model], total_num_tokens if config.calculate_per_token_loss else None, **extra)
    if config.timers is not None:
        config.timers("forward-backward").stop()
    return forward_data_store


def get_forward_backward_func(pp_size: Optional[int] = None, vp_size: Optional[int] = None):
    """The schedule for this rank's pipeline layout (``pp_size``/``vp_size`` default to the global layout's)."""
    pp = pp_size or parallel_state.get_pipeline_model_parallel_world_size()
    vp = vp_size if vp_size is not None else parallel_state.get_virtual_pipeline_model_parallel_world_size()
    if pp > 1:
        kind = "interleaved (virtual stages %d)" % vp if vp else "1F1B"
        raise NotImplementedError(f"pipeline parallelism (--pipeline-model-parallel-size {pp} > 1, {kind} "
                                  "schedule) is not supported yet")
    return forward_backward_no_pipelining
