"""Parameter initialisation that does not depend on the parallel layout.

Every parameter is described by its *full* (unsharded, unpadded) shape, an init method, and how this
rank's shard is cut from the full tensor. At initialisation the full tensor is drawn from a
generator seeded by (seed, global parameter name) and the shard is sliced from it, so every real
element gets the same value whatever the tensor- (and pipeline-) parallel layout is. Padding rows of
the vocabulary are zeros: they never influence anything (their logits are masked).

Layers record the description with :func:`set_param_layout`; models call
:func:`initialize_params_by_name` once the whole tree exists, under :func:`deferred_param_init`.
A layer built on its own (outside a model) initialises itself right away, with its local names.
"""
import contextlib
import hashlib
from typing import Callable, Optional, Tuple

import torch

from megatron.core import device, parallel_state

_DEFER_DEPTH = 0


@contextlib.contextmanager
def deferred_param_init():
    """Inside this block, layers leave initialisation to the enclosing model."""
    global _DEFER_DEPTH
    _DEFER_DEPTH += 1
    try:
        yield
    finally:
        _DEFER_DEPTH -= 1


def init_is_deferred() -> bool:
    return _DEFER_DEPTH > 0


def set_param_layout(param: torch.nn.Parameter, *, init_method: Callable[[torch.Tensor], object],
                     full_shape: Tuple[int, ...], partition_dim: Optional[int] = None,
                     num_chunks: int = 1, padded_size: Optional[int] = None,
                     tp_rank: Optional[int] = None, tp_size: Optional[int] = None) -> None:
    """Describe how ``param`` (this rank's shard) is cut from its full tensor.

    partition_dim: dimension split across tensor-parallel ranks (None: replicated).
    num_chunks: the full tensor is that many logical pieces stacked along ``partition_dim``
        (e.g. SwiGLU's [gate; up]); each piece is split across ranks separately.
    padded_size: the full tensor is zero-padded to this size along ``partition_dim`` before the
        split (vocabulary padding).
    """
    param.init_method = init_method
    param.full_shape = tuple(full_shape)
    param.partition_dim = partition_dim if partition_dim is not None else -1
    param.tensor_model_parallel = partition_dim is not None
    param.partition_stride = num_chunks
    param.padded_size = padded_size
    param.shard_tp_rank = tp_rank
    param.shard_tp_size = tp_size


def shard_from_full(full: torch.Tensor, param: torch.nn.Parameter) -> torch.Tensor:
    """Cut this rank's shard of ``param`` out of its full tensor."""
    dim = getattr(param, "partition_dim", -1)
    if not getattr(param, "tensor_model_parallel", False) or dim < 0:
        return full
    rank = param.shard_tp_rank if param.shard_tp_rank is not None else parallel_state.get_tensor_model_parallel_rank()
    size = param.shard_tp_size if param.shard_tp_size is not None else parallel_state.get_tensor_model_parallel_world_size()
    padded = getattr(param, "padded_size", None)
    if padded is not None and padded > full.size(dim):
        pad_shape = list(full.shape)
        pad_shape[dim] = padded - full.size(dim)
        full = torch.cat([full, full.new_zeros(pad_shape)], dim=dim)
    pieces = full.chunk(param.partition_stride, dim=dim)
    return torch.cat([piece.chunk(size, dim=dim)[rank] for piece in pieces], dim=dim)


def full_from_shards(shards, param: torch.nn.Parameter) -> torch.Tensor:
    """Inverse of :func:`shard_from_full`: the full (unpadded) tensor from every rank's shard,
    ``shards`` ordered by tensor-parallel rank."""
    dim = getattr(param, "partition_dim", -1)
    if not getattr(param, "tensor_model_parallel", False) or dim < 0:
        return shards[0]
    stride = param.partition_stride
    per_rank_pieces = [shard.chunk(stride, dim=dim) for shard in shards]
    pieces = [torch.cat([rank_pieces[k] for rank_pieces in per_rank_pieces], dim=dim) for k in range(stride)]
    full = torch.cat(pieces, dim=dim)
    return full.narrow(dim, 0, param.full_shape[dim])


def _seed_for(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_param(param: torch.nn.Parameter, name: str, seed: int) -> None:
    """Initialise one parameter from (seed, name): draw the full tensor, keep this rank's shard."""
    full_shape = getattr(param, "full_shape", None)
    init_method = getattr(param, "init_method", None)
    if full_shape is None or init_method is None:
        return
    dev = param.device if param.device.type != "meta" else device.current_device()
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(_seed_for(seed, name))
        full = torch.empty(full_shape, dtype=torch.float32, device=dev)
        init_method(full)
    with torch.no_grad():
        param.copy_(shard_from_full(full, param))


def initialize_params_by_name(module: torch.nn.Module, seed: int,
                              global_name: Callable[[str], str] = lambda name: name) -> None:
    """Initialise every described parameter of ``module`` from its global name."""
    for name, param in module.named_parameters():
        init_param(param, global_name(name), seed)


def init_module_now_unless_deferred(module: torch.nn.Module, perform_initialization: bool = True) -> None:
    """Called by layers at the end of __init__: initialise unless a model will do it."""
    if perform_initialization and not init_is_deferred():
        from megatron.core.tensor_parallel.random import get_param_init_seed
        initialize_params_by_name(module, get_param_init_seed())


def init_zeros(t: torch.Tensor) -> None:
    with torch.no_grad():
        t.zero_()


def init_ones(t: torch.Tensor) -> None:
    with torch.no_grad():
        t.fill_(1.0)
