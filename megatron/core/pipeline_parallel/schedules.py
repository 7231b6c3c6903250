"""Forward/backward schedules over micro-batches (Megatron Core's ``get_forward_backward_func``).

The contract: ``forward_step_func(data_iterator, model)`` returns ``(output_tensor, loss_func)``;
``loss_func(output_tensor)`` returns ``(loss, num_tokens, reporting_dict)`` or the legacy
``(loss, reporting_dict)``. Without --calculate-per-token-loss the loss is the micro-batch's mean
(divided here by its token count when given) and is averaged over micro-batches; with it, the loss is
a sum over tokens and the gradients are divided by the global token count in finalize_model_grads.
"""
import contextlib
from typing import Iterator, List, Union

import torch

from megatron.core import device, parallel_state
from megatron.core.utils import get_model_config


def _set_input_tensor(model, input_tensor):
    target = model
    while not hasattr(target, "set_input_tensor") and hasattr(target, "module"):
        target = target.module
    if hasattr(target, "set_input_tensor"):
        target.set_input_tensor(input_tensor)


def forward_step(forward_step_func, data_iterator, model, num_microbatches: int, input_tensor,
                 forward_data_store: List, config, collect_non_loss_data: bool = False, **unused):
    """Run one micro-batch forward; on the last stage apply the loss function."""
    _set_input_tensor(model, input_tensor)
    output_tensor, loss_func = forward_step_func(data_iterator, model)
    num_tokens = torch.tensor(0, dtype=torch.int)
    if parallel_state.is_pipeline_last_stage():
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
            output_tensor = output_tensor / num_microbatches
        else:
            raise ValueError("loss_func must return (loss, num_tokens, dict) or (loss, dict), "
                             f"got a tuple of {len(outputs)}")
        forward_data_store.append(loss_reduced)
    return output_tensor, num_tokens


def backward_step(output_tensor: torch.Tensor, config) -> None:
    if config.grad_scale_func is not None:
        output_tensor = config.grad_scale_func(output_tensor)
    torch.autograd.backward(output_tensor)


def forward_backward_no_pipelining(*, forward_step_func, data_iterator: Union[Iterator, List[Iterator]],
                                   model, num_microbatches: int, seq_length: int, micro_batch_size: int,
                                   decoder_seq_length: int = None, forward_only: bool = False,
                                   collect_non_loss_data: bool = False, first_val_step: bool = None,
                                   adjust_tensor_shapes_fn=None, p2p_communicator=None, pg_collection=None):
    """All micro-batches on one stage: forward and backward each in turn, gradients accumulating."""
    if isinstance(model, list):
        if len(model) != 1:
            raise ValueError("without pipeline parallelism the model must be a single chunk")
        model = model[0]
    if isinstance(data_iterator, list):
        data_iterator = data_iterator[0]
    config = get_model_config(model)
    no_sync = config.no_sync_func or contextlib.nullcontext
    forward_data_store: List = []
    total_num_tokens = torch.zeros((), dtype=torch.int, device=device.current_device())

    def one(i: int):
        nonlocal total_num_tokens
        output_tensor, num_tokens = forward_step(forward_step_func, data_iterator, model, num_microbatches,
                                                 None, forward_data_store, config, collect_non_loss_data)
        total_num_tokens = total_num_tokens + torch.as_tensor(num_tokens, device=total_num_tokens.device).to(torch.int)
        if not forward_only:
            backward_step(output_tensor, config)

    with no_sync():
        for i in range(num_microbatches - 1):
            one(i)
    one(num_microbatches - 1)
    if not forward_only and config.finalize_model_grads_func is not None:
        config.finalize_model_grads_func([model], total_num_tokens if config.calculate_per_token_loss else None)
    return forward_data_store


def get_forward_backward_func(pp_size: int = None, vp_size: int = None):
    """The schedule for this rank's pipeline layout."""
    pp = pp_size or parallel_state.get_pipeline_model_parallel_world_size()
    if pp > 1:
        raise NotImplementedError("pipeline parallelism (--pipeline-model-parallel-size > 1) is not supported yet")
    return forward_backward_no_pipelining
