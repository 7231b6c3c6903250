"""Small helpers of Megatron Core's public API, and the one place that rejects what we do not implement."""
from typing import Dict, Optional

import torch

from megatron.core.errors import NotSupportedError


def _is_default(value, default) -> bool:
    if value is default:
        return True
    if torch.is_tensor(value) or torch.is_tensor(default) or callable(value):
        return False
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # noqa: BLE001 - a value that cannot be compared is not the default
        return False


def reject_unsupported(owner: str, defaults: Optional[Dict[str, object]] = None, **given) -> None:
    """Raise NotSupportedError for the first argument of ``owner`` given a value other than its default.

    Every Megatron-compatible argument (or config field) that we accept but do not implement goes
    through here, so nothing asked for is silently dropped. ``given`` maps argument names to the
    values the caller received; the default is None unless ``defaults`` names another.
    """
    defaults = defaults or {}
    for name, value in given.items():
        default = defaults.get(name)
        if not _is_default(value, default):
            raise NotSupportedError(
                f"{owner}: {name}={value!r} is not supported by megatron-lite (only the default {default!r} is); "
                f"leave {name} unset")


def no_effect(why: str, *values) -> None:
    """Mark arguments that are accepted for compatibility and cannot change the result here
    (kernel choices, communication tuning, buffers for features that are off). ``why`` says why;
    tests/unit/test_no_silent_drops.py counts a parameter passed here as handled."""


def is_te_min_version(version: str, check_equality: bool = True) -> bool:
    """Whether Transformer Engine of at least ``version`` is installed: never here (we do not use TE)."""
    no_effect("Transformer Engine is never used", version, check_equality)
    return False


def get_pg_size(group=None) -> int:
    """Ranks in ``group``; 1 for None (no group: this rank alone) or when torch.distributed is off."""
    if group is None or not torch.distributed.is_initialized():
        return 1
    return group.size()


def get_pg_rank(group=None) -> int:
    """This rank's index in ``group``; 0 for None or when torch.distributed is off."""
    if group is None or not torch.distributed.is_initialized():
        return 0
    return group.rank()


def get_pg_src_rank(group=None) -> int:
    """Global rank of the group's first member (0 for None)."""
    if group is None or not torch.distributed.is_initialized():
        return 0
    return torch.distributed.get_process_group_ranks(group)[0]


def get_model_config(model):
    """The TransformerConfig of a (possibly wrapped) model."""
    if isinstance(model, (list, tuple)):
        model = model[0]
    seen = model
    while seen is not None:
        config = getattr(seen, "config", None)
        if config is not None:
            return config
        seen = getattr(seen, "module", None)
    raise AttributeError(f"{type(model).__name__} has no .config (nor does any wrapped .module)")


def get_attr_wrapped_model(model, attr: str):
    """An attribute of the innermost module that has it (skipping wrappers such as DDP)."""
    while not hasattr(model, attr):
        if not hasattr(model, "module"):
            raise AttributeError(f"no wrapped module has attribute {attr!r}")
        model = model.module
    return getattr(model, attr)


def unwrap_model(model, module_instances=None):
    """Strip wrappers (DDP, Float16Module) that hold the real model in ``.module``."""
    from megatron.core.distributed.distributed_data_parallel import DistributedDataParallel
    from megatron.core.transformer.module import Float16Module
    wrappers = module_instances or (DistributedDataParallel, Float16Module)
    single = not isinstance(model, list)
    models = [model] if single else model
    out = []
    for m in models:
        while isinstance(m, wrappers):
            m = m.module
        out.append(m)
    return out[0] if single else out


def divide(numerator: int, denominator: int) -> int:
    from megatron.core.tensor_parallel.utils import divide as _divide
    return _divide(numerator, denominator)


def is_torch_min_version(version: str) -> bool:
    from packaging.version import Version
    return Version(torch.__version__.split("+")[0]) >= Version(version)
