"""Parameter initialisation that does not depend on the parallel layout.

Every parameter has a :class:`~megatron.core.param_layout.ParamLayout` (full shape, init method,
how this rank's shard is cut from the full tensor). At initialisation the full tensor is drawn
from a generator seeded by (seed, global parameter name) and the shard is sliced from it, so every
real element gets the same value whatever the tensor- (and pipeline-) parallel layout is. Padding
rows of the vocabulary are zeros: they never influence anything (their logits are masked).

Layers record layouts with ``record_param_layout``; models call :func:`initialize_params_by_name`
once the whole tree exists, under :func:`deferred_param_init`. A layer built on its own (outside a
model) initialises itself right away, with its local names.
"""
import contextlib
import hashlib
from typing import Callable, Sequence

import torch

from megatron.core import device
from megatron.core.param_layout import ParamLayout, layout_from_attributes, param_layouts

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


def _layout(layout_or_param) -> ParamLayout:
    if isinstance(layout_or_param, ParamLayout):
        return layout_or_param
    return layout_from_attributes(layout_or_param)  # Megatron's attributes only: no padding known


def shard_from_full(full: torch.Tensor, layout: ParamLayout) -> torch.Tensor:
    """Cut this rank's shard out of the full tensor (see ParamLayout.shard_from_full)."""
    return _layout(layout).shard_from_full(full)


def full_from_shards(shards: Sequence[torch.Tensor], layout: ParamLayout) -> torch.Tensor:
    """The full tensor from every TP rank's shard (see ParamLayout.full_from_shards)."""
    return _layout(layout).full_from_shards(shards)


def _seed_for(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_param(param: torch.nn.Parameter, name: str, seed: int, layout: ParamLayout) -> None:
    """Initialise one parameter from (seed, name): draw the full tensor, keep this rank's shard."""
    if layout.init_method is None:
        return
    dev = param.device if param.device.type != "meta" else device.current_device()
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(_seed_for(seed, name))
        full = torch.empty(layout.full_shape, dtype=torch.float32, device=dev)
        layout.init_method(full)
    with torch.no_grad():
        param.copy_(layout.shard_from_full(full))


def initialize_params_by_name(module: torch.nn.Module, seed: int,
                              global_name: Callable[[str], str] = lambda name: name) -> None:
    """Initialise every parameter of ``module`` that has an init method, from its global name
    (a tied copy from the name of the parameter it is tied to)."""
    table = param_layouts(module)
    for name, param in module.named_parameters():
        layout = table[name]
        init_param(param, layout.tied_to or global_name(name), seed, layout)


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
