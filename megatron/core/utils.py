"""Small helpers of Megatron Core's public API."""
import torch


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
