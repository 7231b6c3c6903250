"""Self-attention: fused QKV projection (column-parallel), RoPE, core attention, output projection."""
from dataclasses import dataclass
from typing import Optional, Union

import torch

from megatron.core.models.common.embeddings.rotary_pos_embedding import apply_rotary_pos_emb
from megatron.core.param_layout import own_param_layouts, update_param_layout
from megatron.core.process_groups_config import default_pg_collection
from megatron.core.tensor_parallel.random import checkpoint
from megatron.core.tensor_parallel.utils import divide
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.utils import get_pg_size, no_effect, reject_unsupported

CP_COMM_TYPE = "how context-parallel ranks exchange keys and values; context parallelism is not supported"


def reject_context_parallel(owner: str, pg_collection) -> None:
    """Context parallelism (a cp group of more than one rank) is not implemented."""
    reject_unsupported(owner, {"context_parallel_size": 1},
                       context_parallel_size=get_pg_size(getattr(pg_collection, "cp", None)))


@dataclass
class SelfAttentionSubmodules:
    linear_qkv: Union[ModuleSpec, type] = None
    core_attention: Union[ModuleSpec, type] = None
    linear_proj: Union[ModuleSpec, type] = None
    q_layernorm: Union[ModuleSpec, type] = None
    k_layernorm: Union[ModuleSpec, type] = None


class SelfAttention(MegatronModule):
    """Megatron's fused QKV layout: the projection output is, per query group, [its queries, k, v].

    Splitting that output across tensor-parallel ranks in contiguous chunks gives each rank whole
    query groups, which is why num_query_groups must be divisible by the tensor-parallel size.
    """

    def __init__(self, config, submodules: SelfAttentionSubmodules, layer_number: int,
                 attn_mask_type: AttnMaskType = AttnMaskType.causal, cp_comm_type: str = None,
                 pg_collection=None):
        super().__init__(config)
        self.pg_collection = default_pg_collection(pg_collection)
        reject_context_parallel("SelfAttention", self.pg_collection)
        no_effect(CP_COMM_TYPE, cp_comm_type)
        tp_group = self.pg_collection.group("tp")
        self.layer_number = layer_number
        self.attn_mask_type = attn_mask_type
        tp = get_pg_size(tp_group)
        self.hidden_size_per_attention_head = config.kv_channels
        self.num_attention_heads_per_partition = divide(config.num_attention_heads, tp)
        self.num_query_groups_per_partition = divide(config.num_query_groups, tp)
        self.query_projection_size = config.kv_channels * config.num_attention_heads
        self.kv_projection_size = config.kv_channels * config.num_query_groups
        self.linear_qkv = build_module(
            submodules.linear_qkv, config.hidden_size, self.query_projection_size + 2 * self.kv_projection_size,
            config=config, init_method=config.init_method, gather_output=False,
            bias=config.add_bias_linear or config.add_qkv_bias, skip_bias_add=False, is_expert=False,
            tp_group=tp_group)
        self.core_attention = build_module(submodules.core_attention, config=config, layer_number=layer_number,
                                           attn_mask_type=attn_mask_type, attention_type="self",
                                           pg_collection=self.pg_collection)
        self.linear_proj = build_module(
            submodules.linear_proj, self.query_projection_size, config.hidden_size, config=config,
            init_method=config.output_layer_init_method, bias=config.add_bias_linear, input_is_parallel=True,
            skip_bias_add=True, is_expert=False, tp_group=tp_group)
        self.q_layernorm = self._qk_norm(submodules.q_layernorm)
        self.k_layernorm = self._qk_norm(submodules.k_layernorm)
        self.checkpoint_core_attention = (config.recompute_granularity == "selective"
                                          and "core_attn" in (config.recompute_modules or []))

    def _qk_norm(self, spec):
        if spec is None or not self.config.qk_layernorm:
            return IdentityOp()
        norm = build_module(spec, config=self.config, hidden_size=self.hidden_size_per_attention_head,
                            eps=self.config.layernorm_epsilon)
        # Each rank normalises its own heads with the shared weight: gradients are partial sums.
        for attr in list(own_param_layouts(norm)):
            update_param_layout(norm, attr, grad_partial_over_tp=True)
        return norm

    def get_query_key_value_tensors(self, hidden_states: torch.Tensor):
        mixed, _ = self.linear_qkv(hidden_states)
        s, b = mixed.shape[:2]
        groups = self.num_query_groups_per_partition
        per_group = self.num_attention_heads_per_partition // groups
        d = self.hidden_size_per_attention_head
        mixed = mixed.view(s, b, groups, (per_group + 2) * d)
        query, key, value = torch.split(mixed, [per_group * d, d, d], dim=3)
        query = query.reshape(s, b, groups * per_group, d)
        return self.q_layernorm(query), self.k_layernorm(key), value

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                key_value_states=None, inference_context=None, rotary_pos_emb=None, rotary_pos_cos=None,
                rotary_pos_sin=None, attention_bias=None, packed_seq_params=None, sequence_len_offset=None,
                inference_params=None):
        reject_unsupported("SelfAttention.forward", key_value_states=key_value_states,
                           inference_context=inference_context, rotary_pos_cos=rotary_pos_cos,
                           rotary_pos_sin=rotary_pos_sin, attention_bias=attention_bias,
                           packed_seq_params=packed_seq_params, sequence_len_offset=sequence_len_offset,
                           inference_params=inference_params)
        query, key, value = self.get_query_key_value_tensors(hidden_states)
        if rotary_pos_emb is not None:
            q_emb, k_emb = rotary_pos_emb if isinstance(rotary_pos_emb, tuple) else (rotary_pos_emb,) * 2
            query = apply_rotary_pos_emb(query, q_emb, config=self.config)
            key = apply_rotary_pos_emb(key, k_emb, config=self.config)
        if self.checkpoint_core_attention and self.training:
            context = checkpoint(lambda q, k, v, m: self.core_attention(q, k, v, m), False,
                                 query, key, value, attention_mask)
        else:
            context = self.core_attention(query, key, value, attention_mask)
        return self.linear_proj(context)
