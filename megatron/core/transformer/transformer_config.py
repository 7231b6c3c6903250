"""TransformerConfig: the one dataclass the model takes (Megatron Core's field names and defaults)."""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from megatron.core.config_fields import megatron_config
from megatron.core.errors import ConfigError
from megatron.core.model_parallel_config import ModelParallelConfig
from megatron.core.transformer.layer_split import layers_per_stage

__all__ = ["ModelParallelConfig", "TransformerConfig", "init_method_normal", "scaled_init_method_normal"]
_KERNEL = "a fused-kernel choice: the plain-torch path computes the same"


def init_method_normal(sigma: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """N(0, sigma) initialisation."""
    def init_(tensor):
        return torch.nn.init.normal_(tensor, mean=0.0, std=sigma)
    return init_


def scaled_init_method_normal(sigma: float, num_layers: int, multiplier: float = 2.0):
    """N(0, sigma / sqrt(2 * num_layers)): for the projections that feed the residual stream."""
    return init_method_normal(sigma / math.sqrt(multiplier * num_layers))


def xavier_uniform_init(tensor):
    return torch.nn.init.xavier_uniform_(tensor)


@megatron_config(
    unsupported={
        "num_moe_experts": "mixture of experts is not supported yet",
        "window_size": "sliding-window attention is not supported yet",
        "multi_latent_attention": "multi-latent attention is not supported yet",
        "init_model_with_meta_device": "meta-device initialisation is not supported yet",
    },
    no_effect={
        "test_mode": "megatron-core's internal test switch",
        "apply_query_key_layer_scaling": "the softmax runs in fp32, where the scaling cancels out",
        "attention_softmax_in_fp32": "scaled_dot_product_attention accumulates its softmax in fp32",
        "attention_backend": "torch's scaled_dot_product_attention picks its backend (flash, cuDNN, ...)",
        "bias_activation_fusion": _KERNEL, "masked_softmax_fusion": _KERNEL, "persist_layer_norm": _KERNEL,
        "memory_efficient_layer_norm": _KERNEL, "apply_rope_fusion": _KERNEL,
    })
@dataclass
class TransformerConfig(ModelParallelConfig):
    """Architecture of a transformer stack (Megatron Core's names and defaults)."""

    num_layers: int = 0
    num_layers_in_first_pipeline_stage: Optional[int] = None
    num_layers_in_last_pipeline_stage: Optional[int] = None
    hidden_size: int = 0
    num_attention_heads: int = 0
    num_query_groups: Optional[int] = None
    ffn_hidden_size: Optional[int] = None
    kv_channels: Optional[int] = None
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    fp32_residual_connection: bool = False
    apply_residual_connection_post_layernorm: bool = False
    layernorm_epsilon: float = 1e-5
    layernorm_zero_centered_gamma: bool = False
    add_bias_linear: bool = True
    add_qkv_bias: bool = False
    gated_linear_unit: bool = False
    activation_func: Callable = F.gelu
    num_moe_experts: Optional[int] = None
    rotary_interleaved: bool = False
    window_size: Optional[tuple] = None
    normalization: str = "LayerNorm"
    qk_layernorm: bool = False
    test_mode: bool = False
    multi_latent_attention: bool = False
    init_method: Optional[Callable] = None
    output_layer_init_method: Optional[Callable] = None
    init_method_std: float = 0.02
    init_model_with_meta_device: bool = False
    apply_query_key_layer_scaling: bool = False
    attention_softmax_in_fp32: bool = True
    softmax_scale: Optional[float] = None
    bias_activation_fusion: bool = False
    masked_softmax_fusion: bool = False
    persist_layer_norm: bool = False
    memory_efficient_layer_norm: bool = False
    bias_dropout_fusion: bool = False
    apply_rope_fusion: bool = False
    recompute_granularity: Optional[str] = None
    recompute_method: Optional[str] = None
    recompute_num_layers: Optional[int] = None
    recompute_modules: Optional[List[str]] = None
    distribute_saved_activations: Optional[bool] = None
    fp16_lm_cross_entropy: bool = False
    attention_backend: str = "auto"

    def __post_init__(self):
        super().__post_init__()

        def fail(msg):
            raise ConfigError(f"TransformerConfig: {msg}")

        if self.num_layers <= 0 or self.hidden_size <= 0 or self.num_attention_heads <= 0:
            fail("num_layers, hidden_size and num_attention_heads must be positive")
        tp = self.tensor_model_parallel_size
        if self.num_attention_heads % tp != 0:
            fail(f"num_attention_heads ({self.num_attention_heads}) must be divisible by "
                 f"tensor_model_parallel_size ({tp})")
        if self.ffn_hidden_size is None:
            self.ffn_hidden_size = 4 * self.hidden_size
        if self.kv_channels is None:
            if self.hidden_size % self.num_attention_heads != 0:
                fail(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                     f"({self.num_attention_heads}) unless kv_channels is given")
            self.kv_channels = self.hidden_size // self.num_attention_heads
        if self.num_query_groups is None:
            self.num_query_groups = self.num_attention_heads
        if self.num_attention_heads % self.num_query_groups != 0:
            fail(f"num_attention_heads ({self.num_attention_heads}) must be divisible by num_query_groups "
                 f"({self.num_query_groups})")
        if self.num_query_groups % tp != 0:
            fail(f"num_query_groups ({self.num_query_groups}) must be divisible by tensor_model_parallel_size ({tp})")
        if self.normalization not in ("LayerNorm", "RMSNorm"):
            fail(f"normalization must be 'LayerNorm' or 'RMSNorm', got {self.normalization!r}")
        if self.fp16 and self.bf16:
            fail("fp16 and bf16 cannot both be set")
        if self.recompute_granularity not in (None, "full", "selective"):
            fail(f"recompute_granularity must be None, 'full' or 'selective', got {self.recompute_granularity!r}")
        if self.recompute_granularity == "full" and self.recompute_method not in ("uniform", "block"):
            fail("recompute_granularity 'full' needs recompute_method 'uniform' or 'block'")
        if self.distribute_saved_activations and self.sequence_parallel:
            fail("distribute_saved_activations must be False with sequence_parallel: the saved inputs are "
                 "already split across tensor-parallel ranks")
        if self.recompute_granularity == "selective" and self.recompute_modules is None:
            self.recompute_modules = ["core_attn"]
        if self.init_method is None:
            self.init_method = init_method_normal(self.init_method_std)
        if self.output_layer_init_method is None:
            self.output_layer_init_method = scaled_init_method_normal(self.init_method_std, self.num_layers)
        if self.pipeline_dtype is None:
            self.pipeline_dtype = self.params_dtype
        layers_per_stage(self)  # an impossible stage split fails here, naming the flags
