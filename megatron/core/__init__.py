"""The library part: parallel state, layers, models, optimizer, datasets. No global args here.

Submodules load on first use, so that tools which only need datasets or tokenizers start fast.
"""
import importlib


def __getattr__(name: str):
    if name == "ModelParallelConfig":
        from megatron.core.model_parallel_config import ModelParallelConfig
        return ModelParallelConfig
    if name == "TransformerConfig":
        from megatron.core.transformer.transformer_config import TransformerConfig
        return TransformerConfig
    # Old Megatron scripts write `from megatron.core import mpu`.
    if name in ("parallel_state", "mpu"):
        return importlib.import_module("megatron.core.parallel_state")
    if name in ("tensor_parallel", "pipeline_parallel", "datasets", "models", "transformer", "optimizer",
                "distributed", "tokenizers", "device", "utils", "process_groups_config",
                "model_parallel_config", "num_microbatches_calculator"):
        return importlib.import_module(f"megatron.core.{name}")
    raise AttributeError(f"module 'megatron.core' has no attribute {name!r}")
