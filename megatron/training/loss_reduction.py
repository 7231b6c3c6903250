"""From the micro-batches' loss dicts to one value per key for the global batch (Megatron's rule).

The schedule returns one dict per micro-batch (what ``loss_func`` reported). A value that is a
[sum, count] pair is summed over micro-batches and data-parallel ranks, then divided (token-weighted,
the 3-tuple contract of ``loss_func``); a single value is averaged over micro-batches, each rank
having already averaged it over data-parallel ranks (the legacy 2-tuple contract). How the
*gradients* are normalised is stated once in megatron/core/pipeline_parallel/schedules.py.
"""
from typing import Dict, List

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state


def reduce_losses(losses_reduced: List[Dict[str, torch.Tensor]]) -> Dict[str, float]:
    out = {}
    if not losses_reduced:
        return out
    for key in losses_reduced[0]:
        vals = [torch.as_tensor(x[key]).reshape(-1).float() for x in losses_reduced]
        if vals[0].numel() == 2:
            total = torch.stack(vals).sum(dim=0).to(device.current_device())
            group = parallel_state.get_data_parallel_group(with_context_parallel=True)
            if parallel_state.get_data_parallel_world_size(with_context_parallel=True) > 1:
                dist.all_reduce(total, group=group)
            out[key] = float(total[0] / total[1].clamp(min=1))
        else:
            out[key] = float(torch.cat(vals).mean())
    return out
