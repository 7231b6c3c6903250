"""Token (+ learned position) embeddings, with dropout, output [sequence, batch, hidden]."""
from typing import Optional

import torch

from megatron.core import device
from megatron.core.param_layout import ParamLayout, ParamRole, record_param_layout
from megatron.core.tensor_parallel import get_cuda_rng_tracker, scatter_to_sequence_parallel_region
from megatron.core.tensor_parallel.layers import VocabParallelEmbedding
from megatron.core.tensor_parallel.mappings import resolve_tp_group
from megatron.core.tensor_parallel.param_init import init_module_now_unless_deferred
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import reject_unsupported


class LanguageModelEmbedding(MegatronModule):
    def __init__(self, config, vocab_size: int, max_sequence_length: int,
                 position_embedding_type: str = "learned_absolute", num_tokentypes: int = 0,
                 scatter_to_sequence_parallel: bool = True, tp_group=None, true_vocab_size: Optional[int] = None):
        super().__init__(config)
        reject_unsupported("LanguageModelEmbedding", {"num_tokentypes": 0}, num_tokentypes=num_tokentypes)
        self.tp_group = resolve_tp_group(tp_group)
        self.vocab_size = vocab_size
        self.add_position_embedding = position_embedding_type == "learned_absolute"
        self.reduce_scatter_embeddings = False
        self.scatter_to_sequence_parallel = scatter_to_sequence_parallel
        self.word_embeddings = VocabParallelEmbedding(
            vocab_size, config.hidden_size, init_method=config.init_method, config=config,
            tp_group=self.tp_group, true_num_embeddings=true_vocab_size)
        if self.add_position_embedding:
            self.position_embeddings = torch.nn.Embedding(
                max_sequence_length, config.hidden_size, dtype=config.params_dtype,
                device=device.current_device())
            record_param_layout(self.position_embeddings, "weight", ParamLayout(
                full_shape=(max_sequence_length, config.hidden_size), role=ParamRole.POSITION_EMBEDDING,
                init_method=config.init_method))
        self.embedding_dropout = torch.nn.Dropout(config.hidden_dropout)
        init_module_now_unless_deferred(self, config.perform_initialization)

    def forward(self, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor],
                tokentype_ids=None) -> torch.Tensor:
        reject_unsupported("LanguageModelEmbedding.forward", tokentype_ids=tokentype_ids)
        embeddings = self.word_embeddings(input_ids)
        if self.add_position_embedding:
            if position_ids is None:
                position_ids = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0)
            embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = embeddings.transpose(0, 1).contiguous()  # [b, s, h] -> [s, b, h]
        if self.config.fp32_residual_connection:
            embeddings = embeddings.float()
        if self.config.sequence_parallel and self.scatter_to_sequence_parallel:
            embeddings = scatter_to_sequence_parallel_region(embeddings, group=self.tp_group)
            with get_cuda_rng_tracker().fork():
                return self.embedding_dropout(embeddings)
        return self.embedding_dropout(embeddings)
