from dataclasses import dataclass
from typing import Optional

from megatron.core.config_fields import megatron_config

_FSDP_ONLY = "only used by FSDP, which is not supported yet"
_COMM = "communication tuning: the reduced gradients are the same"


@megatron_config(
    unsupported={
        "num_distributed_optimizer_instances": "one distributed-optimizer instance per data-parallel group only",
        "check_for_large_grads": "the large-gradient check is not supported",
        "fp8_param_gather": "fp8 parameters are not supported",
        "use_megatron_fsdp": "FSDP is not supported yet",
        "use_custom_fsdp": "FSDP is not supported yet",
        "data_parallel_sharding_strategy": "FSDP is not supported yet",
    },
    no_effect={
        "align_param_gather": "every stage gathers its parameters at the end of its own optimizer step",
        "check_for_nan_in_grad": "non-finite gradients are caught after the reduction: MixedPrecisionOptimizer.step "
                                 "refuses a step whose grad norm is not finite and returns that norm",
        "pad_buckets_for_high_nccl_busbw": _COMM, "gradient_reduce_div_fusion": _COMM,
        "nccl_ub": _COMM,
        "suggested_communication_unit_size": _FSDP_ONLY, "preserve_fp32_weights": _FSDP_ONLY,
        "fsdp_double_buffer": _FSDP_ONLY,
        "keep_fp8_transpose_cache": "fp8 is not supported", "reuse_grad_buf_for_mxfp8_param_ag": "fp8 is not supported",
    })
@dataclass
class DistributedDataParallelConfig:
    """Data-parallel gradient handling (Megatron Core's names)."""

    grad_reduce_in_fp32: bool = False
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    align_param_gather: bool = False
    use_distributed_optimizer: bool = False
    num_distributed_optimizer_instances: int = 1
    check_for_nan_in_grad: bool = False
    check_for_large_grads: bool = False
    bucket_size: Optional[int] = None
    pad_buckets_for_high_nccl_busbw: bool = False
    average_in_collective: bool = False
    fp8_param_gather: bool = False
    use_megatron_fsdp: bool = False
    use_custom_fsdp: bool = False
    data_parallel_sharding_strategy: str = "no_shard"
    gradient_reduce_div_fusion: bool = True
    suggested_communication_unit_size: Optional[int] = None
    preserve_fp32_weights: bool = True
    keep_fp8_transpose_cache: bool = False
    nccl_ub: bool = False
    fsdp_double_buffer: bool = False
    reuse_grad_buf_for_mxfp8_param_ag: bool = False
    calculate_per_token_loss: bool = False
