"""ModuleSpec: say which class builds a submodule, so implementations can be swapped without subclassing."""
from dataclasses import dataclass, field
from typing import Tuple, Union


@dataclass
class ModuleSpec:
    """A module class (or callable) with the keyword arguments and submodules to build it with."""

    module: Union[type, object]
    params: dict = field(default_factory=dict)
    submodules: object = None


def build_module(spec_or_module, *args, **kwargs):
    """Instantiate a ModuleSpec, a class, or return an already-built module as is."""
    if isinstance(spec_or_module, ModuleSpec):
        module = spec_or_module.module
        if spec_or_module.submodules is not None:
            kwargs = dict(kwargs, submodules=spec_or_module.submodules)
        return module(*args, **spec_or_module.params, **kwargs)
    if isinstance(spec_or_module, type):
        return spec_or_module(*args, **kwargs)
    return spec_or_module


def import_module(module_path: Tuple[str, str]):
    """Import ``name`` from ``module`` given as a (module, name) tuple."""
    import importlib
    return getattr(importlib.import_module(module_path[0]), module_path[1])
