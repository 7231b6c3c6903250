"""GPTModel: embeddings -> transformer block -> output layer, loss computed vocabulary-parallel.

Megatron Core's constructor and forward. It communicates only over the groups of its
``pg_collection`` (default: the global layout's) and builds the layers of virtual pipeline stage
``vp_stage``. Two additions:
- ``true_vocab_size``: how many vocabulary entries are real when ``vocab_size`` is the padded size;
  padded logits are masked out of the loss and of the returned logits. A vocabulary not divisible
  by the tensor-parallel size is padded here (and masked) rather than rejected.
- Parameters are initialised from their global names (layout-independent, see param_init); the
  model's ParamLayout table is ``param_layouts(model)``.
"""
import re
from typing import Dict, Literal, Optional

import torch

from megatron.core.errors import ConfigError
from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.param_layout import ParamLayout, ParamRole, param_layouts, update_param_layout
from megatron.core.process_groups_config import default_pg_collection
from megatron.core.tensor_parallel import (
    ColumnParallelLinear,
    vocab_parallel_cross_entropy,
)
from megatron.core.tensor_parallel.cross_entropy import mask_padded_vocab
from megatron.core.tensor_parallel.param_init import deferred_param_init, initialize_params_by_name
from megatron.core.tensor_parallel.random import get_param_init_seed
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_block import TransformerBlock
from megatron.core.utils import get_pg_rank, get_pg_size, no_effect, reject_unsupported

_TIED_WEIGHT = "embedding.word_embeddings.weight"


def check_config_matches_groups(config, pg_collection, owner: str = "GPTModel") -> None:
    """The config's parallel sizes must be the sizes of the groups the model communicates over.

    A config left at tensor/context-parallel size 1 while the groups are larger is accepted, as
    Megatron Core does (its quick-start builds such a config under TP 2): the layers size
    themselves from their groups. The pipeline size must always agree, since the layer split
    reads it from the config.
    """
    pairs = [("tensor_model_parallel_size", config.tensor_model_parallel_size, "tp", True),
             ("pipeline_model_parallel_size", config.pipeline_model_parallel_size, "pp", False),
             ("context_parallel_size", config.context_parallel_size, "cp", True)]
    for field_name, want, group_name, default_defers_to_groups in pairs:
        have = get_pg_size(getattr(pg_collection, group_name, None))
        if want != have and not (default_defers_to_groups and want == 1):
            raise ConfigError(f"{owner}: config.{field_name} is {want} but its pg_collection.{group_name} group "
                              f"has {have} rank(s); build the config with {field_name}={have} or pass the "
                              f"process groups of a {field_name}={want} layout")
    if config.sequence_parallel and get_pg_size(getattr(pg_collection, "tp", None)) == 1:
        raise ConfigError(f"{owner}: config.sequence_parallel needs more than one tensor-parallel rank, but "
                          "pg_collection.tp has 1")

_LAYER_INDEX = re.compile(r"^decoder\.layers\.(\d+)\.")


class GPTModel(MegatronModule):
    def __init__(self, config, transformer_layer_spec, vocab_size: int, max_sequence_length: int,
                 pre_process: bool = True, post_process: bool = True, fp16_lm_cross_entropy: bool = False,
                 parallel_output: bool = True, share_embeddings_and_output_weights: bool = False,
                 position_embedding_type: Literal["learned_absolute", "rope", "none"] = "learned_absolute",
                 rotary_percent: float = 1.0, rotary_base: int = 10000, rope_scaling: bool = False,
                 rope_scaling_factor: float = 8.0, scatter_embedding_sequence_parallel: bool = True,
                 seq_len_interpolation_factor: Optional[float] = None, mtp_block_spec=None, pg_collection=None,
                 vp_stage: Optional[int] = None, true_vocab_size: Optional[int] = None):
        super().__init__(config)
        if position_embedding_type not in ("learned_absolute", "rope", "none"):
            raise NotImplementedError(f"position_embedding_type {position_embedding_type!r} is not supported yet")
        reject_unsupported("GPTModel", mtp_block_spec=mtp_block_spec)
        self.pg_collection = default_pg_collection(pg_collection)
        check_config_matches_groups(config, self.pg_collection)
        self.vp_stage = vp_stage
        tp_group = self.pg_collection.group("tp")
        tp = get_pg_size(tp_group)
        self.true_vocab_size = min(true_vocab_size or vocab_size, vocab_size)
        self.vocab_size = -(-vocab_size // tp) * tp  # pad to a multiple of TP; padding is masked
        self.max_sequence_length = max_sequence_length
        self.pre_process, self.post_process = pre_process, post_process
        self.fp16_lm_cross_entropy = fp16_lm_cross_entropy or config.fp16_lm_cross_entropy
        self.parallel_output = parallel_output
        self.share_embeddings_and_output_weights = share_embeddings_and_output_weights
        self.position_embedding_type = position_embedding_type
        self.model_type = None

        with deferred_param_init():
            if pre_process:
                self.embedding = LanguageModelEmbedding(
                    config, self.vocab_size, max_sequence_length, position_embedding_type,
                    scatter_to_sequence_parallel=scatter_embedding_sequence_parallel, tp_group=tp_group,
                    true_vocab_size=self.true_vocab_size)
            if position_embedding_type == "rope":
                self.rotary_pos_emb = RotaryEmbedding(
                    config.kv_channels, rotary_percent, rotary_interleaved=config.rotary_interleaved,
                    seq_len_interpolation_factor=seq_len_interpolation_factor, rotary_base=rotary_base,
                    rope_scaling=rope_scaling, rope_scaling_factor=rope_scaling_factor,
                    cp_group=getattr(self.pg_collection, "cp", None))
            self.decoder = TransformerBlock(config, transformer_layer_spec, pre_process=pre_process,
                                            post_process=post_process, pg_collection=self.pg_collection,
                                            vp_stage=vp_stage)
            if post_process:
                self.output_layer = ColumnParallelLinear(
                    config.hidden_size, self.vocab_size, config=config, init_method=config.init_method,
                    bias=False, skip_bias_add=False, gather_output=not parallel_output,
                    skip_weight_param_allocation=pre_process and share_embeddings_and_output_weights,
                    true_output_size=self.true_vocab_size, tp_group=tp_group)
                if self.output_layer.weight is not None:
                    # A tied output layer held by the last stage (not the first) is a copy of the
                    # input embedding: it starts equal to it and counts once in the grad norm.
                    tied = _TIED_WEIGHT if share_embeddings_and_output_weights else None
                    update_param_layout(self.output_layer, "weight", role=ParamRole.OUTPUT, tied_to=tied)
        if config.perform_initialization:
            self.initialize_parameters(get_param_init_seed())

    def param_layouts(self) -> Dict[str, ParamLayout]:
        """This model's ParamLayout table, keyed by qualified parameter name."""
        return param_layouts(self)

    def global_param_name(self, local_name: str) -> str:
        """The layout-independent name of a parameter (layer index counted over all stages)."""
        match = _LAYER_INDEX.match(local_name)
        if match:
            index = int(match.group(1)) + self.decoder.layer_offset
            local_name = f"decoder.layers.{index}." + local_name[match.end():]
        return local_name

    def initialize_parameters(self, seed: int) -> None:
        initialize_params_by_name(self, seed, self.global_param_name)

    def set_input_tensor(self, input_tensor) -> None:
        if isinstance(input_tensor, (list, tuple)):
            input_tensor = input_tensor[0]
        self.decoder.set_input_tensor(input_tensor)

    def shared_embedding_or_output_weight(self) -> Optional[torch.Tensor]:
        if self.pre_process:
            return self.embedding.word_embeddings.weight
        if self.post_process:
            return self.output_layer.weight
        return None

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor],
                attention_mask: Optional[torch.Tensor], decoder_input: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None, inference_context=None, packed_seq_params=None,
                extra_block_kwargs: Optional[dict] = None, runtime_gather_output: Optional[bool] = None,
                inference_params=None, loss_mask: Optional[torch.Tensor] = None):
        """Per-token losses [b, s] when ``labels`` is given, else logits [b, s, vocab(/tp)]."""
        reject_unsupported("GPTModel.forward", inference_context=inference_context,
                           packed_seq_params=packed_seq_params, inference_params=inference_params)
        no_effect("megatron-core reads loss_mask only for multi-token prediction, which is refused above; "
                  "the loss function applies the mask", loss_mask)
        if decoder_input is None and self.pre_process:
            decoder_input = self.embedding(input_ids=input_ids, position_ids=position_ids)
        rotary_pos_emb = None
        if self.position_embedding_type == "rope":
            rotary_pos_emb = self.rotary_pos_emb(self._rotary_sequence_length(input_ids, decoder_input))
        hidden_states = self.decoder(decoder_input, attention_mask=attention_mask, rotary_pos_emb=rotary_pos_emb,
                                     **(extra_block_kwargs or {}))
        if not self.post_process:
            return hidden_states
        weight = self.shared_embedding_or_output_weight() if self.share_embeddings_and_output_weights else None
        logits, _ = self.output_layer(hidden_states, weight=weight, runtime_gather_output=runtime_gather_output)
        if labels is None:
            return self._logits_for_user(logits, runtime_gather_output)
        if not self.fp16_lm_cross_entropy:
            logits = logits.float()
        loss = vocab_parallel_cross_entropy(logits, labels.transpose(0, 1).contiguous(),
                                            true_vocab_size=self.true_vocab_size, tp_group=self.output_layer.tp_group)
        return loss.transpose(0, 1).contiguous()

    def _rotary_sequence_length(self, input_ids: Optional[torch.Tensor],
                                decoder_input: Optional[torch.Tensor]) -> int:
        """Full sequence length for RoPE. Later pipeline stages see only the activation received from
        the previous stage ([s, b, h], split over tensor-parallel ranks under sequence parallelism)."""
        if input_ids is not None:
            return input_ids.size(1)
        hidden = decoder_input if decoder_input is not None else self.decoder.input_tensor
        if hidden is None:
            raise ValueError("GPTModel.forward: no input_ids, decoder_input or pipeline input tensor to take "
                             "the sequence length from")
        length = hidden.size(0)
        if self.config.sequence_parallel:
            length *= get_pg_size(self.pg_collection.group("tp"))
        return length

    def _logits_for_user(self, logits: torch.Tensor, runtime_gather_output: Optional[bool]) -> torch.Tensor:
        # (Under sequence parallelism the output layer already gathered the sequence.)
        gathered = (not self.parallel_output) if runtime_gather_output is None else runtime_gather_output
        tp_rank = 0 if gathered else get_pg_rank(self.output_layer.tp_group)
        logits = mask_padded_vocab(logits, self.true_vocab_size, tp_rank * logits.size(-1))
        return logits.transpose(0, 1).contiguous()
