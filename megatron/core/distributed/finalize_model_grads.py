"""After the last micro-batch's backward: reduce gradients across the ranks that hold partial sums."""
from typing import List, Optional

import torch
import torch.distributed as dist

from megatron.core import parallel_state


def _grad_of(param: torch.nn.Parameter) -> Optional[torch.Tensor]:
    return param.main_grad if hasattr(param, "main_grad") else param.grad


def _allreduce_partial_tp_grads(model: List[torch.nn.Module]) -> None:
    """Sum over the tensor-parallel group the gradients that each rank only holds in part:
    norms and row-parallel biases under sequence parallelism (each rank saw a slice of the
    sequence) and q/k norms (each rank normalised its own heads)."""
    if parallel_state.get_tensor_model_parallel_world_size() == 1:
        return
    grads = []
    for chunk in model:
        for param in chunk.parameters():
            if getattr(param, "sequence_parallel", False) or getattr(param, "reduce_grad_across_tp", False):
                grad = _grad_of(param)
                if grad is not None:
                    grads.append(grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=parallel_state.get_tensor_model_parallel_group())
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def finalize_model_grads(model: List[torch.nn.Module], num_tokens: Optional[torch.Tensor] = None,
                         pg_collection=None) -> None:
    """Data-parallel reduction, tensor-parallel partial sums, and per-token normalisation.

    ``num_tokens`` (with --calculate-per-token-loss) is this rank's count of loss tokens; the
    gradients, which are sums over tokens, are divided by the count over all data-parallel ranks.
    """
    for chunk in model:
        chunk.finish_grad_sync()
    _allreduce_partial_tp_grads(model)
    if num_tokens is not None:
        total = num_tokens.detach().clone().float()
        if parallel_state.get_data_parallel_world_size(with_context_parallel=True) > 1:
            dist.all_reduce(total, group=parallel_state.get_data_parallel_group(with_context_parallel=True))
        scale = 1.0 / max(float(total), 1.0)
        for chunk in model:
            chunk.scale_gradients(scale)
