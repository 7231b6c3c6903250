"""Core attention through torch's scaled_dot_product_attention (flash / cuDNN / memory-efficient on GPU)."""
import math
from typing import Optional

import torch
import torch.nn.functional as F

from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import no_effect, reject_unsupported


class DotProductAttention(MegatronModule):
    """softmax(q k^T * scale + mask) v for query [s, b, heads, d] and key/value [s, b, groups, d].

    ``attention_mask`` follows Megatron: a bool tensor broadcastable to [b, 1, s, s] where True means
    "masked out". With no mask and a causal mask type, SDPA's own causal path is used (fastest).
    Grouped-query attention is handed to SDPA (each group serves heads/groups consecutive heads).
    """

    def __init__(self, config, layer_number: int, attn_mask_type: AttnMaskType = AttnMaskType.causal,
                 attention_type: str = "self", attention_dropout: Optional[float] = None,
                 softmax_scale: Optional[float] = None, cp_comm_type: str = None, pg_collection=None):
        super().__init__(config)
        from megatron.core.transformer.attention import CP_COMM_TYPE, reject_context_parallel
        reject_context_parallel("DotProductAttention", pg_collection)
        no_effect(CP_COMM_TYPE, cp_comm_type)
        if attention_type not in ("self", "cross"):
            raise ValueError(f"DotProductAttention: attention_type must be 'self' or 'cross', got {attention_type!r}")
        self.attention_type = attention_type
        self.layer_number = layer_number
        self.attn_mask_type = attn_mask_type
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        if softmax_scale is None:
            softmax_scale = config.softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.softmax_scale = softmax_scale

    def forward(self, query, key, value, attention_mask: Optional[torch.Tensor] = None,
                attn_mask_type: Optional[AttnMaskType] = None, attention_bias=None, packed_seq_params=None):
        reject_unsupported("DotProductAttention.forward", attention_bias=attention_bias,
                           packed_seq_params=packed_seq_params)
        mask_type = attn_mask_type or self.attn_mask_type
        s, b, heads, d = query.shape
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d]
        attn_mask, is_causal = None, False
        if attention_mask is not None:
            attn_mask = ~attention_mask
        elif mask_type in (AttnMaskType.causal, AttnMaskType.padding_causal):
            is_causal = True
        dropout_p = self.dropout_p if self.training else 0.0
        enable_gqa = k.size(1) != q.size(1)

        def attend():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, scale=self.softmax_scale,
                                                  enable_gqa=enable_gqa)

        if dropout_p > 0 and not self.config.sequence_parallel:
            # Heads are split across tensor-parallel ranks: each rank needs its own dropout mask.
            # (Under sequence parallelism the whole block already runs on the per-rank stream.)
            with get_cuda_rng_tracker().fork():
                out = attend()
        else:
            out = attend()
        return out.permute(2, 0, 1, 3).reshape(s, b, heads * d)
