"""The stack of transformer layers of one pipeline stage, with activation recomputation."""
import contextlib
from typing import List, Optional, Union

import torch

from megatron.core.process_groups_config import default_pg_collection
from megatron.core.tensor_parallel.random import checkpoint, get_cuda_rng_tracker
from megatron.core.transformer.layer_split import get_num_layers_to_build, get_transformer_layer_offset
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.utils import get_pg_rank, reject_unsupported

__all__ = ["TransformerBlock", "get_num_layers_to_build", "get_transformer_layer_offset"]


class TransformerBlock(MegatronModule):
    def __init__(self, config, spec: Union[ModuleSpec, List[ModuleSpec]], post_layer_norm: bool = True,
                 pre_process: bool = True, post_process: bool = True, pg_collection=None,
                 vp_stage: Optional[int] = None):
        super().__init__(config)
        self.pre_process, self.post_process = pre_process, post_process
        self.post_layer_norm = post_layer_norm
        self.input_tensor = None
        self.pg_collection = default_pg_collection(pg_collection)
        self.vp_stage = vp_stage
        pp_rank = get_pg_rank(getattr(self.pg_collection, "pp", None))
        num_layers = get_num_layers_to_build(config, vp_stage, pp_rank)
        self.layer_offset = get_transformer_layer_offset(config, vp_stage, pp_rank)
        layer_specs = spec if isinstance(spec, list) else [spec] * num_layers
        # Layers get their number within this chunk (1-based) and add the chunk's offset themselves.
        self.layers = torch.nn.ModuleList(
            build_module(layer_spec, config=config, layer_number=i + 1, pg_collection=self.pg_collection,
                         vp_stage=vp_stage)
            for i, layer_spec in enumerate(layer_specs))
        self.final_layernorm = None
        if post_process and post_layer_norm:
            norm_spec = getattr(layer_specs[0].submodules, "input_layernorm", None) if layer_specs else None
            from megatron.core.transformer.torch_norm import WrappedTorchNorm
            self.final_layernorm = build_module(norm_spec or WrappedTorchNorm, config=config,
                                                hidden_size=config.hidden_size, eps=config.layernorm_epsilon)

    def set_input_tensor(self, input_tensor: torch.Tensor) -> None:
        """Pipeline parallelism: the activation received from the previous stage."""
        self.input_tensor = input_tensor

    def _layer_fn(self, start: int, end: int):
        def run(hidden_states, attention_mask, rotary_pos_emb):
            for layer in self.layers[start:end]:
                hidden_states, _ = layer(hidden_states, attention_mask=attention_mask, rotary_pos_emb=rotary_pos_emb)
            return hidden_states
        return run

    def _forward_layers(self, hidden_states, attention_mask, rotary_pos_emb):
        cfg = self.config
        n = len(self.layers)
        if cfg.recompute_granularity != "full" or not self.training:
            return self._layer_fn(0, n)(hidden_states, attention_mask, rotary_pos_emb)
        chunk = cfg.recompute_num_layers or 1
        # The saved input of each recomputed chunk split over this block's own TP group.
        distribute = self.pg_collection.group("tp") if cfg.distribute_saved_activations else False
        if cfg.recompute_method == "uniform":
            # Keep only the input of every group of `chunk` layers; recompute the group in backward.
            for start in range(0, n, chunk):
                hidden_states = checkpoint(self._layer_fn(start, min(start + chunk, n)),
                                           distribute, hidden_states, attention_mask, rotary_pos_emb)
            return hidden_states
        # "block": recompute the first `chunk` layers of this stage one by one, keep the rest.
        for i in range(n):
            fn = self._layer_fn(i, i + 1)
            if i < chunk:
                hidden_states = checkpoint(fn, distribute, hidden_states, attention_mask, rotary_pos_emb)
            else:
                hidden_states = fn(hidden_states, attention_mask, rotary_pos_emb)
        return hidden_states

    def forward(self, hidden_states: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor] = None,
                context=None, context_mask=None, rotary_pos_emb=None, rotary_pos_cos=None, rotary_pos_sin=None,
                attention_bias=None, inference_context=None, packed_seq_params=None, sequence_len_offset=None,
                inference_params=None):
        reject_unsupported("TransformerBlock.forward", context=context, context_mask=context_mask,
                           rotary_pos_cos=rotary_pos_cos, rotary_pos_sin=rotary_pos_sin, attention_bias=attention_bias,
                           inference_context=inference_context, packed_seq_params=packed_seq_params,
                           sequence_len_offset=sequence_len_offset, inference_params=inference_params)
        if not self.pre_process:
            hidden_states = self.input_tensor
        # Under sequence parallelism every activation in the block is split across tensor-parallel
        # ranks, so all dropout in it draws from the per-rank stream.
        rng = get_cuda_rng_tracker().fork() if self.config.sequence_parallel else contextlib.nullcontext()
        with rng:
            hidden_states = self._forward_layers(hidden_states, attention_mask, rotary_pos_emb)
        if self.final_layernorm is not None:
            hidden_states = self.final_layernorm(hidden_states)
        return hidden_states
