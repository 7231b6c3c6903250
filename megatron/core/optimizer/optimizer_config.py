from dataclasses import dataclass
from typing import Callable, Optional

import torch

from megatron.core.config_fields import megatron_config

_DTYPE = "precision-aware optimizer states are not supported yet: keep float32"


@megatron_config(
    unsupported={
        "use_precision_aware_optimizer": "the precision-aware optimizer is not supported yet",
        "overlap_param_gather_with_optimizer_step": "the first bucket's all-gather runs after the optimizer step, not within it",
        "optimizer_cpu_offload": "optimizer CPU offload is not supported yet",
        "config_logger_dir": "config logging is not supported",
    },
    no_effect={
        "barrier_with_L1_time": "the optimizer records no timers of its own (the driver times the step)",
        "timers": "the optimizer records no timers of its own (the driver times the step)",
    })
@dataclass
class OptimizerConfig:
    """Optimizer settings (Megatron Core's names)."""

    optimizer: str = "adam"
    lr: Optional[float] = None
    min_lr: Optional[float] = None
    decoupled_lr: Optional[float] = None
    decoupled_min_lr: Optional[float] = None
    weight_decay: float = 0.01
    fp16: bool = False
    bf16: bool = False
    params_dtype: torch.dtype = torch.float32
    use_precision_aware_optimizer: bool = False
    main_grads_dtype: torch.dtype = torch.float32
    main_params_dtype: torch.dtype = torch.float32
    exp_avg_dtype: torch.dtype = torch.float32
    exp_avg_sq_dtype: torch.dtype = torch.float32
    loss_scale: Optional[float] = None
    initial_loss_scale: float = 2 ** 32
    min_loss_scale: float = 1.0
    loss_scale_window: float = 1000
    hysteresis: int = 2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-08
    sgd_momentum: float = 0.9
    use_distributed_optimizer: bool = False
    overlap_param_gather_with_optimizer_step: bool = False
    optimizer_cpu_offload: bool = False
    clip_grad: float = 1.0
    log_num_zeros_in_grad: bool = False
    barrier_with_L1_time: bool = False
    timers: Optional[Callable] = None
    config_logger_dir: str = ""

    def __post_init__(self):
        for name, value in (("main_grads_dtype", self.main_grads_dtype), ("main_params_dtype", self.main_params_dtype),
                            ("exp_avg_dtype", self.exp_avg_dtype), ("exp_avg_sq_dtype", self.exp_avg_sq_dtype)):
            if value != torch.float32:
                from megatron.core.errors import NotSupportedError
                raise NotSupportedError(f"OptimizerConfig: field {name}={value} is not supported ({_DTYPE}); "
                                        "leave it at torch.float32")
