"""Which device the library computes on.

Megatron-LM calls ``torch.cuda.current_device()`` everywhere; we run the same code on CPU (gloo)
and GPU (NCCL), so every place that allocates asks this module instead. The choice is made once,
at start-up (``set_device_type``), and defaults to CUDA when it is available.
"""
import os

import torch

_DEVICE_TYPE = None


def set_device_type(device_type: str) -> None:
    """Choose 'cuda' or 'cpu' for the whole process (call before building models)."""
    global _DEVICE_TYPE
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"device type must be 'cuda' or 'cpu', got {device_type!r}")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device type 'cuda' was asked for but torch sees no CUDA device")
    _DEVICE_TYPE = device_type


def device_type() -> str:
    """'cuda' when CUDA is in use, else 'cpu'."""
    global _DEVICE_TYPE
    if _DEVICE_TYPE is None:
        forced = os.environ.get("MEGATRON_DEVICE")
        _DEVICE_TYPE = forced or ("cuda" if torch.cuda.is_available() else "cpu")
    return _DEVICE_TYPE


def current_device() -> torch.device:
    """The device this rank computes on (its CUDA device, or the CPU)."""
    if device_type() == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_cuda() -> bool:
    return device_type() == "cuda"


def synchronize() -> None:
    """Wait for queued device work (a no-op on CPU); timers call this."""
    if on_cuda():
        torch.cuda.synchronize()
