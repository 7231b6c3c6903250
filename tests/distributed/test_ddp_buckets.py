"""Bucketed data-parallel gradient reduction, with and without --overlap-grad-reduce.

Through the real pretrain() driver, with a small --ddp-bucket-size (many buckets): on DP=2, DP=4,
DP=2 x TP=2 and DP=2 x PP=2 (also interleaved) the losses of 5 iterations and the parameters after 3 steps equal the
single-process run's within 1e-5 relative (fp32), and so do the grad norms. Observed from the collectives themselves
(torch.distributed.all_reduce wrapped, and torch.autograd.backward wrapped to mark where each
backward ends): with overlap the first bucket's all-reduce starts before the last backward of the
step ends, without it after; under no_sync with 4 micro-batches a step launches one all-reduce per
bucket, not four. A parameter that gets no gradient does not hang the overlapped reduction.
"""
import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.harness import run_distributed
from tests.pretrain_runner import full_tensors_by_global_name, run_pretrain

ITERS = 5
BASE = ("--num-layers 4 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        "--micro-batch-size 1 --global-batch-size 8 --lr 3e-3 --lr-warmup-iters 1 --lr-decay-style cosine "
        f"--train-iters {ITERS} --log-interval 1 --mock-data --vocab-size 4999 --make-vocab-size-divisible-by 8 "
        "--hidden-dropout 0 --attention-dropout 0 --eval-iters 0 --seed 1234 --clip-grad 0.5 --adam-eps 1e-4 "
        "--num-workers 0 --accumulate-allreduce-grads-in-fp32").split()
# The four layers (about 50k parameters) cut into buckets of 3000 elements, plus the embedding's own.
SMALL_BUCKETS = ["--ddp-bucket-size", "3000"]
OVERLAP = ["--overlap-grad-reduce"]
LAYOUTS = {
    2: {"dp2": []},
    4: {"dp4": [], "dp2-tp2": ["--tensor-model-parallel-size", "2"],
        "dp2-pp2": ["--pipeline-model-parallel-size", "2"],
        # Two model chunks per rank, each its own DDP, reducing after its own last backward.
        "dp2-pp2-interleaved": ["--pipeline-model-parallel-size", "2", "--num-virtual-stages-per-pipeline-rank", "2"]},
}


def _params_after_step_3(store):
    """A finalize hook that keeps, before step 4's update, this rank's parameters by global name
    (tensor-parallel shards gathered into the full tensor)."""
    def hook(model, iteration):
        from megatron.core import parallel_state as ps
        if iteration != 4 or ps.get_data_parallel_rank() != 0:
            return
        for name, _, value in full_tensors_by_global_name(model, lambda p: p.data):
            store[name] = value
    return hook


def _train(argv):
    params = {}
    record = run_pretrain(argv, _params_after_step_3(params))
    return {"loss": record["loss"], "grad_norm": record["grad_norm"], "params": params}


def _parity_runs(rank, world_size, layouts):
    return {(name, overlap): _train(BASE + SMALL_BUCKETS + layout + (OVERLAP if overlap else []))
            for name, layout in layouts.items() for overlap in (False, True)}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _single_process_run(rank, world_size):
    return _train(BASE)


@pytest.fixture(scope="module")
def reference():
    return run_distributed(_single_process_run, 1)[0]


@pytest.mark.parametrize("world_size", [2, 4])
def test_bucketed_reduction_matches_the_single_process_run(reference, world_size):
    per_rank = run_distributed(_parity_runs, world_size, LAYOUTS[world_size])
    for key in per_rank[0]:
        losses = per_rank[-1][key]["loss"]  # the last rank is on the last pipeline stage
        assert len(losses) == ITERS and _rel(losses, reference["loss"]) <= 1e-5, (key, losses, reference["loss"])
        # Adam and clipping hide a gradient scale: the grad norm (before clipping) shows it.
        norms = per_rank[-1][key]["grad_norm"]
        assert _rel(norms, reference["grad_norm"]) <= 1e-5, (key, norms, reference["grad_norm"])
        params = {name: p for records in per_rank for name, p in records[key]["params"].items()}
        assert set(params) == set(reference["params"]), key
        for name, value in params.items():
            assert _rel(value, reference["params"][name]) <= 1e-5, (key, name, _rel(value, reference["params"][name]))


def _observed_runs(rank, world_size):
    """Per step and overlap setting: the order of buffer all-reduces and backward ends, and the buckets."""
    from megatron.core.distributed import DistributedDataParallel
    events = []
    real_all_reduce, real_backward = dist.all_reduce, torch.autograd.backward

    def all_reduce(tensor, *args, **kwargs):
        events.append(("all_reduce", tensor.untyped_storage().data_ptr()))
        return real_all_reduce(tensor, *args, **kwargs)

    def backward(*args, **kwargs):
        result = real_backward(*args, **kwargs)
        events.append(("backward_end", None))
        return result

    out = {}

    def hook_for(overlap):
        def hook(model, iteration):
            ddp = [chunk for chunk in model if isinstance(chunk, DistributedDataParallel)][0]
            storages = {b.grad_data.untyped_storage().data_ptr() for b in ddp.buffers}
            step = [kind if kind == "backward_end" else "bucket" for kind, ptr in events
                    if kind == "backward_end" or ptr in storages]
            buckets = [(b.grad_data.numel(), [b.shard_range(r) for r in range(world_size)], b.offset)
                       for buf in ddp.buffers for b in buf.buckets]
            out[(overlap, iteration)] = {"events": step, "buckets": buckets,
                                         "buffer_numel": [buf.grad_data.numel() for buf in ddp.buffers]}
            events.clear()
        return hook

    dist.all_reduce, torch.autograd.backward = all_reduce, backward
    try:
        for overlap in (False, True):
            events.clear()
            run_pretrain(BASE + SMALL_BUCKETS + ["--train-iters", "2"] + (OVERLAP if overlap else []),
                         hook_for(overlap))
    finally:
        dist.all_reduce, torch.autograd.backward = real_all_reduce, real_backward
    return out


@pytest.fixture(scope="module")
def observed():
    return run_distributed(_observed_runs, 2)[0]


def test_overlap_launches_the_first_bucket_before_backward_ends(observed):
    for iteration in (1, 2):
        with_overlap, without = observed[(True, iteration)]["events"], observed[(False, iteration)]["events"]
        assert with_overlap.count("backward_end") == 4  # DP=2: 4 micro-batches per rank
        last_backward = len(with_overlap) - 1 - with_overlap[::-1].index("backward_end")
        assert with_overlap.index("bucket") < last_backward, with_overlap
        last_backward = len(without) - 1 - without[::-1].index("backward_end")
        assert without.index("bucket") > last_backward, without


def test_no_sync_defers_the_reduction_to_the_last_micro_batch(observed):
    for overlap in (False, True):
        for iteration in (1, 2):
            record = observed[(overlap, iteration)]
            assert len(record["buckets"]) > 5
            assert record["events"].count("bucket") == len(record["buckets"]), (overlap, record["events"])


def test_buckets_tile_the_buffer_in_equal_per_rank_shards(observed):
    record = observed[(True, 1)]
    assert len(record["buffer_numel"]) == 1  # one dtype (fp32), one group
    end = 0
    for numel, shards, offset in record["buckets"]:
        assert offset == end and numel % 2 == 0
        assert shards == [(offset, offset + numel // 2), (offset + numel // 2, offset + numel)]
        end = offset + numel
    assert end == record["buffer_numel"][0]


def _unused_param_run(rank, world_size):
    """Overlap on, a parameter that gets no gradient in its own bucket: finish_grad_sync still completes."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.core.transformer.transformer_config import TransformerConfig
    module = torch.nn.Module()
    module.used = torch.nn.Parameter(torch.ones(4))
    module.unused = torch.nn.Parameter(torch.ones(4))
    config = TransformerConfig(num_layers=1, hidden_size=4, num_attention_heads=1)
    pg = ProcessGroupCollection(tp=None, dp_cp=dist.group.WORLD)
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(overlap_grad_reduce=True, bucket_size=4),
                                  module, pg_collection=pg)
    for micro_batch in range(2):
        with ddp.no_sync() if micro_batch == 0 else torch.enable_grad():
            (module.used * (rank + 1)).sum().backward()
    ddp.finish_grad_sync()
    return len(ddp.buffers[0].buckets), module.used.main_grad.tolist(), module.unused.main_grad.tolist()


def test_a_parameter_without_gradient_does_not_hang_the_overlapped_reduction():
    for buckets, used, unused in run_distributed(_unused_param_run, 2):
        assert buckets == 2
        assert used == [3.0] * 4  # mean over ranks of 2 micro-batches x (rank + 1): (2 + 4) / 2
        assert unused == [0.0] * 4
