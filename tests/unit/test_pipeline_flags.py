"""Pipeline-parallel flags: derived sizes, the stage split, and layouts refused before any work."""
import pytest

from megatron.core.errors import ConfigError
from megatron.core.transformer.layer_split import get_num_layers_to_build, get_transformer_layer_offset
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.training.arguments import parse_and_validate

BASE = ("--num-layers 8 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 1 --global-batch-size 8 --lr 1e-3 --train-iters 10 --mock-data").split()


@pytest.fixture(autouse=True)
def _clean_launcher_env(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def run(flags: str, world_size: int):
    return parse_and_validate(argv=BASE + flags.split(), world_size=world_size)


def refused(flags: str, world_size: int) -> str:
    with pytest.raises(ConfigError) as info:
        run(flags, world_size)
    return str(info.value)


def test_virtual_stages_from_either_flag():
    args = run("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 2", 2)
    assert args.virtual_pipeline_model_parallel_size == 2 and args.microbatch_group_size_per_vp_stage == 2
    args = run("--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 4", 4)
    assert (args.virtual_pipeline_model_parallel_size, args.data_parallel_size) == (4, 2)
    assert run("--pipeline-model-parallel-size 2", 2).virtual_pipeline_model_parallel_size is None
    args = run("--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 1", 2)
    assert args.virtual_pipeline_model_parallel_size is None
    assert any("interleaving is off" in note for note in args.startup_notes)


@pytest.mark.parametrize("flags, world, words", [
    ("--pipeline-model-parallel-size 3", 3, ["--num-layers 8", "--pipeline-model-parallel-size 3"]),
    ("--pipeline-model-parallel-size 2", 1, ["world size is only 1"]),
    ("--pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 3", 4,
     ["--decoder-first-pipeline-num-layers", "share the rest equally"]),
    ("--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 9", 2, ["cannot be split"]),
    ("--decoder-last-pipeline-num-layers 2", 1, ["--decoder-last-pipeline-num-layers needs"]),
    ("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 3", 2,
     ["--num-layers-per-virtual-pipeline-stage 3 must divide"]),
    ("--pipeline-model-parallel-size 2 --num-layers-per-virtual-pipeline-stage 2 "
     "--num-virtual-stages-per-pipeline-rank 2", 2, ["not both"]),
    ("--num-virtual-stages-per-pipeline-rank 2", 1, ["need --pipeline-model-parallel-size > 1"]),
    ("--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 3", 2,
     ["not divisible by its 3 virtual stages"]),
    ("--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 3 "
     "--num-virtual-stages-per-pipeline-rank 2", 2, ["pipeline stage 0 holds 3 layer(s)"]),
    ("--pipeline-model-parallel-size 2 --microbatch-group-size-per-virtual-pipeline-stage 2", 2,
     ["for the interleaved schedule"]),
])
def test_invalid_layouts_name_the_flags(flags, world, words):
    message = refused(flags, world)
    for word in words:
        assert word in message, message


def test_interleaved_micro_batch_rule_is_checked_at_start():
    # 4 stages x 2 virtual stages with 2 micro-batches per step: fewer micro-batches than stages.
    message = refused("--pipeline-model-parallel-size 4 --num-virtual-stages-per-pipeline-rank 2 "
                      "--global-batch-size 2", 4)
    assert "micro" in message and "--global-batch-size" in message, message


def _split(pp, vpp=None, first=None, last=None, layers=8):
    config = TransformerConfig(num_layers=layers, hidden_size=8, num_attention_heads=2,
                               pipeline_model_parallel_size=pp, virtual_pipeline_model_parallel_size=vpp,
                               num_layers_in_first_pipeline_stage=first, num_layers_in_last_pipeline_stage=last)
    return [[(get_transformer_layer_offset(config, v if vpp else None, r),
              get_num_layers_to_build(config, v if vpp else None, r)) for v in range(vpp or 1)] for r in range(pp)]


def test_stage_split_covers_every_layer_once_in_model_order():
    assert _split(2) == [[(0, 4)], [(4, 4)]]
    assert _split(4, first=1, last=3) == [[(0, 1)], [(1, 2)], [(3, 2)], [(5, 3)]]
    # Interleaved: virtual stage 0 of every rank, then virtual stage 1 of every rank.
    assert _split(2, vpp=2) == [[(0, 2), (4, 2)], [(2, 2), (6, 2)]]
    assert _split(2, vpp=2, first=2, last=6) == [[(0, 1), (4, 1)], [(1, 3), (5, 3)]]
    for layout in (_split(4, vpp=2), _split(3, first=2, last=2), _split(2, vpp=4, first=4, last=4)):
        covered = sorted(layer for rank in layout for offset, n in rank for layer in range(offset, offset + n))
        assert covered == list(range(8))
