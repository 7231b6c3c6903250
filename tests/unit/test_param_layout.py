"""The ParamLayout table: it covers every parameter of GPT-2- and Llama-style models at TP 1 and 2,
and the full tensors rebuilt from the TP-2 shards equal the single-process model's parameters.

No collectives run while building a model, so the TP-2 ranks are built in this one process over a
stand-in tensor-parallel group that only answers size() and rank().
"""
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import Replicate, Shard

from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.param_layout import ParamLayout, ParamRole, ShardPiece, param_layouts
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.transformer_config import TransformerConfig
from tests.harness import free_port

VARIANTS = {
    "gpt2": (dict(normalization="LayerNorm"),
             dict(position_embedding_type="learned_absolute", share_embeddings_and_output_weights=True)),
    "llama": (dict(normalization="RMSNorm", gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False,
                   num_attention_heads=8, num_query_groups=4, ffn_hidden_size=40, qk_layernorm=True),
              dict(position_embedding_type="rope", share_embeddings_and_output_weights=False)),
}


class _StandInGroup:
    def __init__(self, size: int, rank: int):
        self._size, self._rank = size, rank

    def size(self) -> int:
        return self._size

    def rank(self) -> int:
        return self._rank


@pytest.fixture(scope="module", autouse=True)
def one_rank_world():
    # get_pg_size/get_pg_rank only consult a group once torch.distributed is up.
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    if started:
        dist.destroy_process_group()


def _model(variant: str, tp: int, rank: int, sp: bool = False) -> GPTModel:
    config_kw, model_kw = dict(VARIANTS[variant][0]), VARIANTS[variant][1]
    heads = config_kw.pop("num_attention_heads", 4)
    config = TransformerConfig(num_layers=2, hidden_size=32, num_attention_heads=heads,
                               tensor_model_parallel_size=tp, sequence_parallel=sp, **config_kw)
    tp_group = _StandInGroup(tp, rank) if tp > 1 else None
    pg = ProcessGroupCollection(tp=tp_group, pp=None, mp=tp_group, cp=None, dp=None, dp_cp=None, expt_dp=None)
    return GPTModel(config, get_gpt_layer_local_spec(qk_layernorm=config.qk_layernorm), vocab_size=104,
                    max_sequence_length=16, true_vocab_size=100, pg_collection=pg, **model_kw)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_table_covers_every_parameter_and_shards_rebuild_the_full_model(variant):
    single = _model(variant, 1, 0)
    single_table = param_layouts(single)
    # The single-process model's logical tensors (its vocabulary padding cut off).
    reference = {name: single_table[name].full_from_shards([p.detach()]) for name, p in single.named_parameters()}
    ranks = [_model(variant, 2, r, sp=True) for r in range(2)]
    tables = [param_layouts(m) for m in ranks]
    for model, table in zip(ranks, tables):
        params = dict(model.named_parameters())
        assert set(table) == set(params) == set(reference)
        for name, layout in table.items():
            assert layout.local_shape == tuple(params[name].shape), name
            assert layout.init_method is not None, f"{name} has no init method in its layout"
            # Megatron's public attributes are derived from the record.
            assert params[name].tensor_model_parallel == layout.is_tensor_parallel
            assert params[name].partition_stride == layout.chunks
    for name, full in reference.items():
        shards = [dict(m.named_parameters())[name].detach() for m in ranks]
        rebuilt = tables[0][name].full_from_shards(shards)
        assert torch.equal(rebuilt, full), name

    table = tables[1]
    assert table["embedding.word_embeddings.weight"].role == ParamRole.EMBEDDING
    assert table["embedding.word_embeddings.weight"].padded_full_shape == (104, 32)
    assert table["embedding.word_embeddings.weight"].full_shape == (100, 32)
    assert table["decoder.final_layernorm.weight"].grad_partial_over_tp  # sequence parallel
    if variant == "llama":
        assert table["output_layer.weight"].role == ParamRole.OUTPUT
        assert table["decoder.layers.0.self_attention.q_layernorm.weight"].grad_partial_over_tp
        fc1 = table["decoder.layers.0.mlp.linear_fc1.weight"]
        # [gate; up] of 40 rows each: rank 1 holds gate[20:40] then up[20:40].
        assert fc1.shard_pieces() == [ShardPiece(0, 0, 20, 20), ShardPiece(1, 20, 60, 20)]
        assert fc1.tp_placement() is None  # strided: no plain DTensor placement
        assert table["decoder.layers.0.mlp.linear_fc2.weight"].tp_placement() == Shard(1)
        assert table["decoder.layers.0.input_layernorm.weight"].tp_placement() == Replicate()
    else:
        assert "output_layer.weight" not in table  # tied: the output layer uses the embedding


def test_shard_pieces_leave_out_vocabulary_padding():
    layout = ParamLayout(full_shape=(100, 8), partition_dim=0, padded_size=104, tp_rank=1, tp_size=2)
    assert layout.local_shape == (52, 8)
    assert layout.shard_pieces() == [ShardPiece(0, 0, 52, 48)]
    full = torch.randn(100, 8)
    shard = layout.shard_from_full(full)
    assert torch.equal(shard[:48], full[52:]) and torch.count_nonzero(shard[48:]) == 0
