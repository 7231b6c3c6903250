"""Run-time health checks: where non-finite gradients are, and whether data-parallel replicas agree."""
from typing import List

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.errors import TrainingStopped


def _local_grads_finite(model) -> bool:
    chunks = model if isinstance(model, list) else [model]
    for chunk in chunks:
        for param in chunk.parameters():
            grad = getattr(param, "main_grad", None)
            grad = param.grad if grad is None else grad
            if grad is not None and not torch.isfinite(grad).all():
                return False
    return True


def nonfinite_grad_ranks(model) -> List[int]:
    """Global ranks whose own gradients hold a NaN or inf (collective: every rank must call)."""
    bad = torch.tensor([0 if _local_grads_finite(model) else 1], dtype=torch.int32, device=device.current_device())
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [0] if bad.item() else []
    flags = [torch.zeros_like(bad) for _ in range(dist.get_world_size())]
    dist.all_gather(flags, bad)
    return [rank for rank, flag in enumerate(flags) if flag.item()]


def nonfinite_loss_ranks(losses_reduced) -> List[int]:
    """Global ranks whose own micro-batch losses (before the data-parallel reduction) are NaN/inf.

    Collective. Checked once per step rather than per micro-batch, so it costs one small exchange."""
    local_bad = 0
    for loss_dict in losses_reduced:
        for value in loss_dict.values():
            if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                local_bad = 1
    bad = torch.tensor([local_bad], dtype=torch.int32, device=device.current_device())
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [0] if local_bad else []
    flags = [torch.zeros_like(bad) for _ in range(dist.get_world_size())]
    dist.all_gather(flags, bad)
    return [rank for rank, flag in enumerate(flags) if flag.item()]


def check_weight_hash_across_dp_replicas(model, iteration: int) -> None:
    """--check-weight-hash-across-dp-replicas-interval: data-parallel replicas must hold equal weights."""
    chunks = model if isinstance(model, list) else [model]
    acc = torch.zeros(2, dtype=torch.float64, device=device.current_device())
    for chunk in chunks:
        for i, param in enumerate(chunk.parameters()):
            values = param.detach().double().reshape(-1)
            acc[0] += values.sum()
            acc[1] += (values * (1.0 + (torch.arange(values.numel(), device=values.device) % 97) / 97.0)).sum() * (i + 1)
    size = parallel_state.get_data_parallel_world_size()
    if size == 1:
        return
    gathered = [torch.zeros_like(acc) for _ in range(size)]
    dist.all_gather(gathered, acc, group=parallel_state.get_data_parallel_group())
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise TrainingStopped(f"iteration {iteration}: weights differ across data-parallel replicas "
                           f"(checksums {[g.tolist() for g in gathered]}): silent data corruption or a bug")
