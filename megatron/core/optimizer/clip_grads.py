"""Global gradient norm (each parameter counted once across tensor/pipeline ranks) and clipping."""
from typing import List

import torch
import torch.distributed as dist

from megatron.core.device import current_device


def _all_reduce(total: torch.Tensor, groups, op=dist.ReduceOp.SUM) -> None:
    """Reduce over a group, or over each group of a list in turn (data-parallel shards, then
    model-parallel ranks: together every rank of the model)."""
    for group in groups if isinstance(groups, (list, tuple)) else [groups]:
        if group is not None:
            dist.all_reduce(total, op=op, group=group)


def get_grad_norm_fp32(grads_for_norm: List[torch.Tensor], norm_type: float = 2.0,
                       grad_stats_parallel_group=None) -> float:
    """L2 (or inf) norm over ``grads_for_norm`` of every rank in ``grad_stats_parallel_group``.

    Callers pass only the gradients this rank must count (no tensor-parallel duplicates).
    """
    if isinstance(grads_for_norm, torch.Tensor):
        grads_for_norm = [grads_for_norm]
    device = grads_for_norm[0].device if grads_for_norm else current_device()
    if norm_type == float("inf"):
        local = max((g.abs().max().float() for g in grads_for_norm), default=torch.zeros((), device=device))
        total = torch.as_tensor(local, dtype=torch.float32, device=device).clone()
        _all_reduce(total, grad_stats_parallel_group, op=dist.ReduceOp.MAX)
        return float(total)
    if grads_for_norm and device.type == "cpu":
        # The CPU norm kernels accumulate float32 sequentially (1e-4 relative error on a large
        # embedding gradient): accumulate in float64 so the norm does not depend on how the
        # tensors are split across ranks.
        norms = [torch.linalg.vector_norm(g, norm_type, dtype=torch.float64) for g in grads_for_norm]
        total = torch.stack(norms).pow(norm_type).sum()
    elif grads_for_norm:
        norms = torch._foreach_norm([g.float() if g.dtype != torch.float32 else g for g in grads_for_norm], norm_type)
        total = torch.stack(norms).pow(norm_type).sum()
    else:
        total = torch.zeros((), dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    _all_reduce(total, grad_stats_parallel_group)
    return float(total.pow(1.0 / norm_type))


def clip_grad_by_total_norm_fp32(grads: List[torch.Tensor], max_norm: float, total_norm: float) -> None:
    """Scale every gradient by max_norm / total_norm when the norm exceeds max_norm."""
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0 and grads:
        torch._foreach_mul_(grads, clip_coeff)


def count_zeros_fp32(grads_for_norm: List[torch.Tensor], grad_stats_parallel_group=None) -> float:
    device = grads_for_norm[0].device if grads_for_norm else current_device()
    total = torch.zeros((), dtype=torch.float32, device=device)
    for g in grads_for_norm:
        total += (g == 0).sum()
    _all_reduce(total, grad_stats_parallel_group)
    return float(total)
