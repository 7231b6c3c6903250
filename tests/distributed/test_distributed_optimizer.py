"""The distributed optimizer (--use-distributed-optimizer, ZeRO-1), through the real pretrain() driver.

On DP=2, DP=4, DP=2 x TP=2 (with SP) and DP=2 x PP=2 (tied embeddings across the two stages), with
small buckets and with one bucket, alone and with --overlap-grad-reduce --overlap-param-gather: the losses of 5 iterations,
the grad norms and the parameters after 3 steps equal the single-process run's within 1e-5 (fp32).
Each rank holds about 1/DP of the optimizer state. A checkpoint saved with it resumes exactly with
it, and with the unsharded optimizer (the state is saved in the unsharded format).
"""
import os

import pytest
import torch

from tests.distributed.test_ddp_buckets import BASE, SMALL_BUCKETS, _params_after_step_3, _rel
from tests.harness import run_distributed
from tests.pretrain_runner import run_pretrain

DISTRIB = ["--use-distributed-optimizer"]
OVERLAP = ["--overlap-grad-reduce", "--overlap-param-gather"]
LAYOUTS = {
    2: {"dp2": []},
    4: {"dp4": [], "dp2-tp2": ["--tensor-model-parallel-size", "2", "--sequence-parallel"],
        "dp2-pp2": ["--pipeline-model-parallel-size", "2"],
        # One bucket per stage: the tied embedding's shard ranges differ between the two stages, so
        # its bucket must be all-reduced (with small buckets it sits alone in one and they agree).
        "dp2-pp2-one-bucket": ["--pipeline-model-parallel-size", "2", "--ddp-bucket-size", "100000000"]},
}


def _train(argv):
    params = {}
    record = run_pretrain(argv, _params_after_step_3(params))
    return {"loss": record["loss"], "grad_norm": record["grad_norm"], "params": params}


def _single_process_run(rank, world_size):
    return _train(BASE)


@pytest.fixture(scope="module")
def reference():
    return run_distributed(_single_process_run, 1)[0]


def _parity_runs(rank, world_size, layouts):
    return {(name, overlap): _train(BASE + SMALL_BUCKETS + DISTRIB + layout + (OVERLAP if overlap else []))
            for name, layout in layouts.items() for overlap in (False, True)}


@pytest.mark.parametrize("world_size", [2, 4])
def test_distributed_optimizer_matches_the_single_process_run(reference, world_size):
    per_rank = run_distributed(_parity_runs, world_size, LAYOUTS[world_size])
    for key in per_rank[0]:
        losses = per_rank[-1][key]["loss"]
        assert len(losses) == len(reference["loss"]) and _rel(losses, reference["loss"]) <= 1e-5, (key, losses)
        assert _rel(per_rank[-1][key]["grad_norm"], reference["grad_norm"]) <= 1e-5, key
        params = {name: p for records in per_rank for name, p in records[key]["params"].items()}
        assert set(params) == set(reference["params"]), key
        for name, value in params.items():
            assert _rel(value, reference["params"][name]) <= 1e-5, (key, name, _rel(value, reference["params"][name]))


def _state_bytes_run(rank, world_size):
    """A small GPT through the public core API: the bytes of optimizer state on each rank, sharded
    and not, for bf16 weights (fp32 masters and two Adam moments)."""
    import torch.distributed as dist
    from megatron.core import parallel_state
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer.module import Float16Module
    from megatron.core.transformer.transformer_config import TransformerConfig
    parallel_state.initialize_model_parallel()
    out = {}
    for sharded in (False, True):
        torch.manual_seed(7)
        model_parallel_cuda_manual_seed(7)
        config = TransformerConfig(num_layers=2, hidden_size=64, num_attention_heads=4, bf16=True,
                                   params_dtype=torch.bfloat16)
        model = Float16Module(config, GPTModel(config, get_gpt_layer_local_spec(), vocab_size=512,
                                               max_sequence_length=16))
        ddp = DistributedDataParallel(config, DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, use_distributed_optimizer=sharded, bucket_size=20000), model)
        optimizer = get_megatron_optimizer(OptimizerConfig(lr=1e-3, bf16=True, use_distributed_optimizer=sharded),
                                           [ddp])
        tokens = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(rank))
        positions = torch.arange(16).unsqueeze(0).expand(2, 16)
        loss = ddp(tokens, positions, None, labels=tokens).float().mean()
        loss.backward()
        ddp.finish_grad_sync()
        assert optimizer.step()[0]
        if sharded:
            out["sharded"] = optimizer.state_bytes()
        else:
            out["full"] = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                              if t.dim() > 0) + sum(m.numel() * 4 for _, m in optimizer.pairs)
        out.setdefault("weights_equal", []).append(
            torch.cat([p.detach().float().reshape(-1) for p in ddp.module.parameters()]))
        dist.barrier()
    out["weights_equal"] = bool(torch.equal(*out["weights_equal"]))
    parallel_state.destroy_model_parallel()
    return out


def test_each_rank_holds_its_share_of_the_optimizer_state():
    per_rank = run_distributed(_state_bytes_run, 2)
    full = per_rank[0]["full"]
    for record in per_rank:
        assert record["full"] == full
        assert abs(record["sharded"] - full / 2) <= 0.01 * full, (record["sharded"], full)
        # The same first step, sharded or not, gives the same bf16 weights.
        assert record["weights_equal"]


def _resume_runs(rank, world_size, save_dir):
    flags = BASE + SMALL_BUCKETS + ["--save", save_dir, "--save-interval", "2"]
    straight = run_pretrain(flags + DISTRIB)
    resumed = {}
    for name, extra in (("distributed", DISTRIB), ("unsharded", [])):
        if rank == 0:
            with open(os.path.join(save_dir, "latest_checkpointed_iteration.txt"), "w") as f:
                f.write("2")  # pretend the run stopped after iteration 2
        torch.distributed.barrier()
        resumed[name] = run_pretrain(flags + extra + ["--load", save_dir])
    return straight, resumed


def test_a_distributed_optimizer_checkpoint_resumes_with_and_without_it(tmp_path):
    straight, resumed = run_distributed(_resume_runs, 2, str(tmp_path / "ckpt"))[-1]
    exact = resumed["distributed"]
    assert exact["loss"] == straight["loss"][2:] and exact["grad_norm"] == straight["grad_norm"][2:]
    other = resumed["unsharded"]
    assert len(other["loss"]) == len(straight["loss"]) - 2
    assert _rel(other["loss"], straight["loss"][2:]) <= 1e-5
    assert _rel(other["grad_norm"], straight["grad_norm"][2:]) <= 1e-5
