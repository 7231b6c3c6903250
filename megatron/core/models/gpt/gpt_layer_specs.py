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
from megatron.core.utils import reject_unsupported


def get_gpt_layer_local_submodules(num_experts: Optional[int] = None, moe_grouped_gemm: Optional[bool] = False,
                                   qk_layernorm: Optional[bool] = False,
                                   multi_latent_attention: Optional[bool] = False, fp8: Optional[str] = None,
                                   normalization: Optional[str] = None, qk_l2_norm: Optional[bool] = False,
                                   use_kitchen: bool = False, use_kitchen_attention: bool = False,
                                   kitchen_attention_backend: str = "sdpa",
                                   enable_hyper_connection: bool = False) -> TransformerLayerSubmodules:
    """The submodules of the plain-PyTorch GPT layer (Megatron Core's 'local' implementation).

    ``normalization`` (LayerNorm / RMSNorm) overrides the config's; None means use the config's.
    """
    reject_unsupported("get_gpt_layer_local_submodules",
                       {"moe_grouped_gemm": False, "multi_latent_attention": False, "qk_l2_norm": False,
                        "use_kitchen": False, "use_kitchen_attention": False, "kitchen_attention_backend": "sdpa",
                        "enable_hyper_connection": False},
                       num_experts=num_experts, moe_grouped_gemm=bool(moe_grouped_gemm),
                       multi_latent_attention=bool(multi_latent_attention), fp8=fp8, qk_l2_norm=bool(qk_l2_norm),
                       use_kitchen=use_kitchen, use_kitchen_attention=use_kitchen_attention,
                       kitchen_attention_backend=kitchen_attention_backend,
                       enable_hyper_connection=enable_hyper_connection)
    norm = ModuleSpec(WrappedTorchNorm, params={"normalization": normalization}) if normalization else WrappedTorchNorm
    return TransformerLayerSubmodules(
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
    )


def get_gpt_layer_local_spec(num_experts: Optional[int] = None, moe_grouped_gemm: Optional[bool] = False,
                             qk_layernorm: Optional[bool] = False, multi_latent_attention: Optional[bool] = False,
                             fp8: Optional[str] = None, moe_use_legacy_grouped_gemm: Optional[bool] = False,
                             normalization: Optional[str] = None, qk_l2_norm: Optional[bool] = False,
                             use_kitchen: bool = False, use_kitchen_attention: bool = False,
                             kitchen_attention_backend: str = "sdpa") -> ModuleSpec:
    """The plain-PyTorch GPT layer (Megatron Core's 'local' spec)."""
    reject_unsupported("get_gpt_layer_local_spec", {"moe_use_legacy_grouped_gemm": False},
                       moe_use_legacy_grouped_gemm=bool(moe_use_legacy_grouped_gemm))
    return ModuleSpec(module=TransformerLayer, submodules=get_gpt_layer_local_submodules(
        num_experts=num_experts, moe_grouped_gemm=moe_grouped_gemm, qk_layernorm=qk_layernorm,
        multi_latent_attention=multi_latent_attention, fp8=fp8, normalization=normalization, qk_l2_norm=qk_l2_norm,
        use_kitchen=use_kitchen, use_kitchen_attention=use_kitchen_attention,
        kitchen_attention_backend=kitchen_attention_backend))


def get_gpt_layer_with_transformer_engine_spec(num_experts: Optional[int] = None,
                                               moe_grouped_gemm: Optional[bool] = False,
                                               qk_layernorm: Optional[bool] = False,
                                               multi_latent_attention: Optional[bool] = False,
                                               fp8: Optional[str] = None, **kwargs) -> ModuleSpec:
    """Transformer Engine is not used: this returns the local spec, which computes the same model.

    Of the other keyword arguments only ``normalization`` is honoured; any other given a value
    raises NotSupportedError."""
    normalization = kwargs.pop("normalization", None)
    reject_unsupported("get_gpt_layer_with_transformer_engine_spec", {k: False for k in kwargs}, **kwargs)
    return get_gpt_layer_local_spec(num_experts=num_experts, moe_grouped_gemm=moe_grouped_gemm,
                                    qk_layernorm=qk_layernorm, multi_latent_attention=multi_latent_attention,
                                    fp8=fp8, normalization=normalization)
