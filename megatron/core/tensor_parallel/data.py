"""Broadcast a batch from tensor-parallel rank 0 to the other ranks of its group."""
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

from megatron.core import device
from megatron.core.tensor_parallel.mappings import resolve_tp_group
from megatron.core.utils import get_pg_rank, get_pg_size, get_pg_src_rank


def broadcast_data(keys: List[str], data: Optional[Dict[str, torch.Tensor]], datatype: torch.dtype,
                   tp_group=None) -> Dict[str, torch.Tensor]:
    """Megatron's ``broadcast_data``: rank 0 of the TP group sends ``data[k]`` for each key.

    Only tensor-parallel rank 0 needs ``data``; the others may pass None. Shapes are broadcast first.
    ``tp_group`` defaults to the global tensor-parallel group.
    """
    dev = device.current_device()
    group = resolve_tp_group(tp_group)
    if get_pg_size(group) == 1:
        return {k: data[k].to(dev) for k in keys}
    src = get_pg_src_rank(group)
    is_src = get_pg_rank(group) == 0
    if is_src:
        for k in keys:
            if data[k].dtype != datatype:
                raise TypeError(f"broadcast_data: {k!r} has dtype {data[k].dtype}, expected {datatype}")
        dims = torch.tensor([data[k].dim() for k in keys], dtype=torch.long, device=dev)
    else:
        dims = torch.empty(len(keys), dtype=torch.long, device=dev)
    dist.broadcast(dims, src, group=group)
    if is_src:
        shapes = torch.tensor([s for k in keys for s in data[k].shape], dtype=torch.long, device=dev)
    else:
        shapes = torch.empty(int(dims.sum()), dtype=torch.long, device=dev)
    dist.broadcast(shapes, src, group=group)
    out, offset = {}, 0
    for k, d in zip(keys, dims.tolist()):
        shape = shapes[offset:offset + d].tolist()
        offset += d
        tensor = data[k].to(dev).contiguous() if is_src else torch.empty(shape, dtype=datatype, device=dev)
        dist.broadcast(tensor, src, group=group)
        out[k] = tensor
    return out
