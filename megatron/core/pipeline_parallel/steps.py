"""One micro-batch forward (with the loss on the last stage) and backward: the steps every schedule runs.

How the loss is normalised before backward is defined in the docstring of
megatron/core/pipeline_parallel/schedules.py.
"""
from typing import List, Optional

import torch

from megatron.core import parallel_state
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.utils import no_effect, reject_unsupported


def check_first_val_step(first_val_step: Optional[bool], forward_only: bool, cond: bool) -> bool:
    """Whether a micro-batch counts as the step's first (``cond``), by Megatron's rule: on a
    forward-only pass ``first_val_step`` also has to allow it (Transformer Engine refreshes cached
    fp8 weights on the first micro-batch)."""
    if first_val_step is not None and forward_only:
        return bool(first_val_step) and cond
    return cond


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


