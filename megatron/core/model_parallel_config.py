"""ModelParallelConfig: parallel layout and precision settings (Megatron Core's class and module)."""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from megatron.core.config_fields import megatron_config
from megatron.core.errors import ConfigError

_NOT_OVERLAPPED = ("the pipeline schedules wait for each exchange before computing on: overlapping it with "
                   "compute would only change the speed (the interleaved schedule still refuses it together "
                   "with batch_p2p_comm, as Megatron does)")
_SAME_RESULT = "a kernel or overlap choice: the result is the same"


@megatron_config(
    unsupported={
        "expert_model_parallel_size": "mixture of experts is not supported yet",
        "enable_autocast": "torch.autocast around the model is not supported; use fp16/bf16",
        "autocast_dtype": "torch.autocast around the model is not supported; use fp16/bf16",
    },
    no_effect={
        "expert_tensor_parallel_size": "only expert layers use it, and they are not supported yet",
        "use_cpu_initialization": "initialisation is layout-independent: each full tensor is drawn from "
                                  "(seed, parameter name) and this rank's shard kept, on any device",
        "deterministic_mode": "kernels come from torch: torch.use_deterministic_algorithms(True) makes them "
                              "deterministic (the driver's --deterministic-mode does)",
        "overlap_p2p_comm": _NOT_OVERLAPPED,
        "async_tensor_model_parallel_allreduce": _SAME_RESULT, "tp_comm_overlap": _SAME_RESULT,
    })
@dataclass
class ModelParallelConfig:
    """Parallel layout and precision settings shared by every Megatron Core module.

    Pipeline fields (read by megatron.core.pipeline_parallel): pipeline_dtype (what activations
    travel as; params_dtype when None), batch_p2p_comm, variable_seq_lengths (refused: shapes are
    fixed), deallocate_pipeline_outputs (free a stage output once sent),
    microbatch_group_size_per_vp_stage (the interleaved schedule's micro-batch group; default the
    pipeline size).

    The hook fields (grad_scale_func, finalize_model_grads_func, no_sync_func, grad_sync_func,
    param_sync_func) are read by the schedules only when they are not given ScheduleHooks.
    """

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: Optional[int] = None
    sequence_parallel: bool = False
    context_parallel_size: int = 1
    expert_model_parallel_size: int = 1
    expert_tensor_parallel_size: Optional[int] = None
    perform_initialization: bool = True
    use_cpu_initialization: bool = False
    fp16: bool = False
    bf16: bool = False
    params_dtype: torch.dtype = torch.float32
    timers: Optional[Callable] = None
    finalize_model_grads_func: Optional[Callable] = None
    grad_scale_func: Optional[Callable] = None
    no_sync_func: Optional[Callable] = None
    grad_sync_func: Optional[Callable] = None
    param_sync_func: Optional[Callable] = None
    deterministic_mode: bool = False
    enable_autocast: bool = False
    autocast_dtype: Optional[torch.dtype] = None
    pipeline_dtype: Optional[torch.dtype] = None
    variable_seq_lengths: bool = False
    overlap_p2p_comm: bool = False
    batch_p2p_comm: bool = True
    deallocate_pipeline_outputs: bool = False
    microbatch_group_size_per_vp_stage: Optional[int] = None
    gradient_accumulation_fusion: bool = False
    async_tensor_model_parallel_allreduce: bool = False
    tp_comm_overlap: bool = False
    barrier_with_L1_time: bool = True
    calculate_per_token_loss: bool = False

    def __post_init__(self):
        if self.sequence_parallel and self.tensor_model_parallel_size <= 1:
            raise ConfigError("ModelParallelConfig: sequence_parallel needs tensor_model_parallel_size > 1 "
                              f"(got {self.tensor_model_parallel_size})")
        if self.expert_tensor_parallel_size is None:
            self.expert_tensor_parallel_size = self.tensor_model_parallel_size
        if self.microbatch_group_size_per_vp_stage is None:  # Megatron's default: the pipeline size
            self.microbatch_group_size_per_vp_stage = self.pipeline_model_parallel_size
