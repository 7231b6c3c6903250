"""The library part: parallel state, layers, models, optimizer, datasets. No global args here.

Submodules load on first use, so that tools which only need datasets or tokenizers start fast.
"""
import importlib


def __getattr__(name: str):
    # Old Megatron scripts write `from megatron.core import mpu`.
    if name in ("parallel_state", "mpu"):
        return importlib.import_module("megatron.core.parallel_state")
    if name in ("tensor_parallel", "pipeline_parallel", "datasets", "models", "transformer", "optimizer",
                "distributed", "tokenizers", "device"):
        return importlib.import_module(f"megatron.core.{name}")
    raise AttributeError(f"module 'megatron.core' has no attribute {name!r}")
