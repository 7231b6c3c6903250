"""LayerNorm and RMSNorm on plain torch ops (Megatron's "local" norm implementation)."""
from typing import Optional

import torch
import torch.nn.functional as F

from megatron.core import device
from megatron.core.param_layout import ParamLayout, ParamRole, record_param_layout
from megatron.core.tensor_parallel.param_init import init_module_now_unless_deferred, init_ones, init_zeros
from megatron.core.utils import no_effect


class WrappedTorchNorm(torch.nn.Module):
    """``config.normalization`` (LayerNorm or RMSNorm) over the last dimension.

    With ``layernorm_zero_centered_gamma`` the weight is stored as (gamma - 1) and starts at zero.
    Under sequence parallelism each rank sees a slice of the sequence, so the weight gradients are
    partial sums: their layouts ask for a sum over the tensor-parallel group.
    """

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, persist_layer_norm: bool = False,
                 zero_centered_gamma: Optional[bool] = None, normalization: Optional[str] = None):
        super().__init__()
        no_effect("a kernel choice of apex's fused layer norm", persist_layer_norm)
        self.config = config
        self.normalization = normalization or config.normalization
        if self.normalization not in ("LayerNorm", "RMSNorm"):
            raise ValueError(f"unknown normalization {self.normalization!r}: expected LayerNorm or RMSNorm")
        self.eps = eps
        self.hidden_size = hidden_size
        self.zero_centered_gamma = (config.layernorm_zero_centered_gamma if zero_centered_gamma is None
                                    else zero_centered_gamma)
        dev = device.current_device()
        self.weight = torch.nn.Parameter(torch.empty(hidden_size, dtype=config.params_dtype, device=dev))
        record_param_layout(self, "weight", ParamLayout(
            full_shape=(hidden_size,), role=ParamRole.NORM, grad_partial_over_tp=config.sequence_parallel,
            init_method=init_zeros if self.zero_centered_gamma else init_ones))
        if self.normalization == "LayerNorm":
            self.bias = torch.nn.Parameter(torch.empty(hidden_size, dtype=config.params_dtype, device=dev))
            record_param_layout(self, "bias", ParamLayout(
                full_shape=(hidden_size,), role=ParamRole.NORM, grad_partial_over_tp=config.sequence_parallel,
                init_method=init_zeros))
        else:
            self.register_parameter("bias", None)
        init_module_now_unless_deferred(self, config.perform_initialization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight + 1 if self.zero_centered_gamma else self.weight
        if self.normalization == "LayerNorm":
            return F.layer_norm(x, (self.hidden_size,), weight, self.bias, self.eps)
        return F.rms_norm(x, (self.hidden_size,), weight, self.eps)
