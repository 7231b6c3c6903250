"""The memory breakdown printed once after the first iteration: what each rank holds for
parameters, gradients and optimizer state, and what the activations took at their peak, so users
see what the distributed optimizer and activation recompute save.

Bytes are counted per distinct storage, so tensors that are views of one buffer (bucketed gradient
buffers, say) count the buffer once, padding included: the memory really held.
"""
from typing import Dict, Iterable, List

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state

_MB = 1024 * 1024


def _storage_bytes(tensors: Iterable[torch.Tensor], exclude: Iterable[int] = ()) -> int:
    """Bytes of the distinct storages behind ``tensors``, skipping storages whose pointer is in
    ``exclude``."""
    seen: Dict[int, int] = {}
    skip = set(exclude)
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _chunks(model) -> list:
    return model if isinstance(model, list) else [model]


def _torch_optimizers(optimizer) -> List[torch.optim.Optimizer]:
    """The torch optimizers inside a Megatron optimizer (one, or several when chained)."""
    if optimizer is None:
        return []
    if isinstance(optimizer, torch.optim.Optimizer):
        return [optimizer]
    found = []
    for inner in getattr(optimizer, "chained_optimizers", None) or [getattr(optimizer, "optimizer", None)]:
        found.extend(_torch_optimizers(inner))
    return found


def memory_bytes(model, optimizer) -> Dict[str, int]:
    """This rank's bytes of parameters, gradients (main_grad buffers, or .grad where there is no
    main_grad), and optimizer state (the torch optimizers' state tensors plus the master copies
    they update that are not the model's own parameters)."""
    params = [p for chunk in _chunks(model) for p in chunk.parameters()]
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    grads = [g for g in (getattr(p, "main_grad", None) if getattr(p, "main_grad", None) is not None else p.grad
                         for p in params) if g is not None]
    state, masters = [], []
    for opt in _torch_optimizers(optimizer):
        for group in opt.param_groups:
            masters.extend(group["params"])
        for per_param in opt.state.values():
            state.extend(v for v in per_param.values() if torch.is_tensor(v))
    return {"parameters": _storage_bytes(params), "gradients": _storage_bytes(grads),
            "optimizer state": _storage_bytes(state) + _storage_bytes(masters, exclude=param_ptrs)}


def memory_report_lines(model, optimizer, args) -> List[str]:
    """This rank's breakdown in MB, one line, in the style of Megatron's memory report line. Peak
    activations are the allocator's peak minus the parameters, gradients and optimizer state
    (an estimate: the peak may also hold temporaries of the optimizer step); not measured on CPU."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    sizes = memory_bytes(model, optimizer)
    parts = [f"{name}: {value / _MB:.2f}" for name, value in sizes.items()]
    if device.on_cuda():
        peak = torch.cuda.max_memory_allocated() - sum(sizes.values())
        parts.append(f"peak activations: {max(peak, 0) / _MB:.2f}")
    else:
        parts.append("peak activations: not measured on CPU")
    recompute = args.recompute_granularity or "off"
    if args.recompute_granularity == "full":
        recompute += f" {args.recompute_method} {args.recompute_num_layers}"
    elif args.recompute_granularity == "selective":
        recompute += f" {','.join(args.recompute_modules or [])}"
    options = (f"recompute: {recompute}, distributed optimizer: "
               f"{'on' if args.use_distributed_optimizer else 'off'}")
    return [f"[Rank {rank}] (after the first iteration) memory breakdown (MB) | " + " | ".join(parts) + f" | {options}"]


def print_memory_report(model, optimizer, args) -> None:
    """Print the breakdown on data-parallel rank 0 of every model-parallel rank (the others hold
    the same amounts, or 1/DP of the sharded optimizer state)."""
    if parallel_state.get_data_parallel_rank() == 0:
        for line in memory_report_lines(model, optimizer, args):
            print(line, flush=True)
