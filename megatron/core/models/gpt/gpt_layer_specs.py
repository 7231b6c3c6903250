"""Layer specs for GPT: which classes make up a transformer layer."""
from typing import Optional

from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.bias_dropout_add import get_bias_dropout_add
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules


def _unsupported(name, value):
    if value:
        raise NotImplementedError(f"{name} is not supported yet")


def get_gpt_layer_local_spec(num_experts: Optional[int] = None, moe_grouped_gemm: Optional[bool] = False,
                             qk_layernorm: Optional[bool] = False, multi_latent_attention: Optional[bool] = False,
                             fp8: Optional[str] = None, moe_use_legacy_grouped_gemm: Optional[bool] = False,
                             normalization: Optional[str] = None, qk_l2_norm: Optional[bool] = False,
                             use_kitchen: bool = False) -> ModuleSpec:
    """The plain-PyTorch GPT layer (Megatron Core's 'local' spec).

    ``normalization`` (LayerNorm / RMSNorm) overrides the config's; None means use the config's.
    """
    _unsupported("mixture of experts (num_experts)", num_experts)
    _unsupported("multi-latent attention", multi_latent_attention)
    _unsupported("qk_l2_norm", qk_l2_norm)
    norm = ModuleSpec(WrappedTorchNorm, params={"normalization": normalization}) if normalization else WrappedTorchNorm
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.causal},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=ColumnParallelLinear,
                    core_attention=DotProductAttention,
                    linear_proj=RowParallelLinear,
                    q_layernorm=norm if qk_layernorm else IdentityOp,
                    k_layernorm=norm if qk_layernorm else IdentityOp,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=ColumnParallelLinear,
                                                                linear_fc2=RowParallelLinear)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def get_gpt_layer_with_transformer_engine_spec(num_experts: Optional[int] = None,
                                               moe_grouped_gemm: Optional[bool] = False,
                                               qk_layernorm: Optional[bool] = False,
                                               multi_latent_attention: Optional[bool] = False,
                                               fp8: Optional[str] = None, **kwargs) -> ModuleSpec:
    """Transformer Engine is not used: this returns the local spec, which computes the same model."""
    return get_gpt_layer_local_spec(num_experts=num_experts, moe_grouped_gemm=moe_grouped_gemm,
                                    qk_layernorm=qk_layernorm, multi_latent_attention=multi_latent_attention,
                                    normalization=kwargs.get("normalization"))
