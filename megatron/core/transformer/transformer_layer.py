"""One transformer layer: norm -> attention -> residual, norm -> MLP -> residual (pre-norm by default)."""
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from megatron.core.process_groups_config import default_pg_collection
from megatron.core.tensor_parallel.random import checkpoint
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.layer_split import get_transformer_layer_offset
from megatron.core.transformer.mlp import MLP
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.utils import get_pg_rank, reject_unsupported

__all__ = ["TransformerLayer", "TransformerLayerSubmodules", "get_transformer_layer_offset"]


@dataclass
class TransformerLayerSubmodules:
    input_layernorm: Union[ModuleSpec, type] = IdentityOp
    self_attention: Union[ModuleSpec, type] = IdentityOp
    self_attn_bda: Union[ModuleSpec, type, object] = None
    pre_cross_attn_layernorm: Union[ModuleSpec, type] = IdentityOp
    cross_attention: Union[ModuleSpec, type] = IdentityOp
    cross_attn_bda: Union[ModuleSpec, type, object] = None
    pre_mlp_layernorm: Union[ModuleSpec, type] = IdentityOp
    mlp: Union[ModuleSpec, type] = IdentityOp
    mlp_bda: Union[ModuleSpec, type, object] = None
    sharded_state_dict_keys_map: dict = field(default_factory=dict)


def _is_mlp(spec) -> bool:
    module = spec.module if isinstance(spec, ModuleSpec) else spec
    return isinstance(module, type) and issubclass(module, MLP)


class TransformerLayer(MegatronModule):
    """``layer_number`` is 1-based within the (virtual) pipeline stage, as the block passes it; the
    layer adds the stage's offset, so ``self.layer_number`` is global (as in Megatron Core)."""

    def __init__(self, config, submodules: TransformerLayerSubmodules, layer_number: int = 1,
                 hidden_dropout: Optional[float] = None, pg_collection=None, vp_stage=None):
        super().__init__(config)
        # Cross-attention (encoder-decoder models) is never built here: refuse a spec that asks for it.
        reject_unsupported("TransformerLayerSubmodules",
                           {"pre_cross_attn_layernorm": IdentityOp, "cross_attention": IdentityOp},
                           pre_cross_attn_layernorm=submodules.pre_cross_attn_layernorm,
                           cross_attention=submodules.cross_attention)
        self.submodules_config = submodules
        self.pg_collection = default_pg_collection(pg_collection)
        pp_rank = get_pg_rank(getattr(self.pg_collection, "pp", None))
        self.layer_number = layer_number + get_transformer_layer_offset(config, vp_stage, pp_rank)
        self.hidden_dropout = config.hidden_dropout if hidden_dropout is None else hidden_dropout
        eps = config.layernorm_epsilon
        self.input_layernorm = build_module(submodules.input_layernorm, config=config,
                                            hidden_size=config.hidden_size, eps=eps)
        self.self_attention = build_module(submodules.self_attention, config=config, layer_number=self.layer_number,
                                           pg_collection=self.pg_collection)
        self.pre_mlp_layernorm = build_module(submodules.pre_mlp_layernorm, config=config,
                                              hidden_size=config.hidden_size, eps=eps)
        mlp_kwargs = {"tp_group": self.pg_collection.group("tp")} if _is_mlp(submodules.mlp) else {}
        self.mlp = build_module(submodules.mlp, config=config, **mlp_kwargs)
        self.self_attn_bda = submodules.self_attn_bda
        self.mlp_bda = submodules.mlp_bda
        # Selective recompute of the layer's own parts (core_attn is handled by the attention).
        selective = config.recompute_modules if config.recompute_granularity == "selective" else None
        self.recompute_layernorm = "layernorm" in (selective or [])
        self.recompute_mlp = "mlp" in (selective or [])

    def _norm(self, norm, hidden_states: torch.Tensor) -> torch.Tensor:
        """norm(hidden_states), keeping only its input for backward under layernorm recompute."""
        if self.recompute_layernorm and self.training:
            return checkpoint(norm, False, hidden_states)
        return norm(hidden_states)

    def _mlp(self, hidden_states: torch.Tensor):
        """The MLP's (output, bias). Under mlp recompute the bias is added inside the recomputed
        function: a parameter returned as is from a checkpointed function would take the
        checkpoint's backward as its own gradient function."""
        if not (self.recompute_mlp and self.training):
            return self.mlp(hidden_states)

        def output_with_bias(x):
            out, bias = self.mlp(x)
            return out if bias is None else out + bias
        return checkpoint(output_with_bias, False, hidden_states), None

    def _bda(self, factory, x_with_bias, residual):
        return factory(self.training, self.config.bias_dropout_fusion)(x_with_bias, residual, self.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                context=None, context_mask=None, rotary_pos_emb=None, rotary_pos_cos=None,
                rotary_pos_sin=None, attention_bias=None, inference_context=None, packed_seq_params=None,
                sequence_len_offset=None, inference_params=None):
        reject_unsupported("TransformerLayer.forward", context_mask=context_mask, rotary_pos_cos=rotary_pos_cos,
                           rotary_pos_sin=rotary_pos_sin, attention_bias=attention_bias,
                           inference_context=inference_context, packed_seq_params=packed_seq_params,
                           sequence_len_offset=sequence_len_offset, inference_params=inference_params)
        post_ln_residual = self.config.apply_residual_connection_post_layernorm
        normed = self._norm(self.input_layernorm, hidden_states)
        residual = normed if post_ln_residual else hidden_states
        attention_out = self.self_attention(normed, attention_mask=attention_mask, rotary_pos_emb=rotary_pos_emb)
        hidden_states = self._bda(self.self_attn_bda, attention_out, residual)

        normed = self._norm(self.pre_mlp_layernorm, hidden_states)
        residual = normed if post_ln_residual else hidden_states
        hidden_states = self._bda(self.mlp_bda, self._mlp(normed), residual)
        return hidden_states, context
