"""The full pretrain() driver: golden loss curve on every layout, per-token loss with gradient
accumulation, exact resume from a checkpoint, and fp16 overflow on one rank."""
import json
import math
import os

import numpy as np
import pytest
import torch

from tests.harness import run_distributed
from tests.pretrain_runner import run_pretrain

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden", "gpt_llama_mock_fp32.json")
# Tiny Llama-style model on mock data, fp32, fixed seed. Clipping is tight so that it happens.
BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 8 --group-query-attention --num-query-groups 4 "
        "--ffn-hidden-size 96 --swiglu --normalization RMSNorm --position-embedding-type rope "
        "--disable-bias-linear --untie-embeddings-and-output-weights --seq-length 32 --micro-batch-size 2 "
        "--global-batch-size 8 --lr 3e-3 --lr-warmup-iters 2 --lr-decay-style cosine --train-iters 8 "
        "--log-interval 4 --mock-data --vocab-size 4999 --make-vocab-size-divisible-by 8 --hidden-dropout 0 "
        "--attention-dropout 0 --eval-iters 0 --seed 1234 --clip-grad 0.3 --num-workers 0").split()
LAYOUTS = {
    1: [[]],
    2: [["--tensor-model-parallel-size", "2", "--sequence-parallel"],
        ["--pipeline-model-parallel-size", "2"]],
    4: [["--tensor-model-parallel-size", "2", "--sequence-parallel"],
        ["--tensor-model-parallel-size", "4"],
        ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2", "--sequence-parallel"]],
}


def _golden_runs(rank, world_size):
    return [run_pretrain(BASE + layout) for layout in LAYOUTS[world_size]]


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_golden_loss_curve_on_every_layout(world_size):
    record = run_distributed(_golden_runs, world_size)[-1]  # the last rank holds the losses
    if world_size == 1 and os.environ.get("MEGATRON_REGEN_GOLDEN"):
        with open(GOLDEN, "w") as f:
            json.dump({"argv": BASE, "loss": record[0]["loss"], "grad_norm": record[0]["grad_norm"]}, f, indent=1)
    with open(GOLDEN) as f:
        golden = json.load(f)
    assert golden["argv"] == BASE, "the golden file was made with other flags: regenerate it"
    for run in record:
        assert _rel(run["loss"], golden["loss"]) <= 1e-5, (run["loss"], golden["loss"])
        assert _rel(run["grad_norm"], golden["grad_norm"]) <= 1e-5, (run["grad_norm"], golden["grad_norm"])
        assert min(run["grad_norm"]) > 0.3  # clipping happened on every step


def _uneven_dataset(prefix: str, vocab: int = 300, eod: int = 300) -> None:
    """Documents of very different lengths, each ending in EOD, so loss masks differ across micro-batches."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(400):
        length = int(rng.choice([2, 3, 5, 40, 90]))
        doc = np.append(rng.integers(0, vocab, length), eod).astype(np.uint16)
        builder.add_document(doc, [len(doc)])
    builder.finalize(prefix + ".idx")


def _accumulation_runs(rank, world_size, prefix):
    common = ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 24 "
              "--max-position-embeddings 24 --global-batch-size 8 --lr 1e-3 --train-iters 3 --log-interval 1 "
              "--vocab-size 300 --tokenizer-type NullTokenizer --eod-mask-loss --split 100,0,0 "
              "--hidden-dropout 0 --attention-dropout 0 --eval-iters 0 --clip-grad 0 --num-workers 0").split()
    common += ["--data-path", prefix]
    runs = {}
    for per_token in (True, False):
        for mbs in (2, 8):
            flags = ["--micro-batch-size", str(mbs)] + (["--calculate-per-token-loss"] if per_token else [])
            runs[(per_token, mbs)] = run_pretrain(common + flags)
    return runs


def test_per_token_loss_makes_accumulation_equal_one_big_batch(tmp_path):
    prefix = str(tmp_path / "uneven_text_document")
    _uneven_dataset(prefix)
    runs = run_distributed(_accumulation_runs, 1, prefix)[0]
    accumulated, single = runs[(True, 2)], runs[(True, 8)]
    assert _rel(accumulated["loss"], single["loss"]) <= 1e-5
    assert _rel(accumulated["grad_norm"], single["grad_norm"]) <= 1e-5
    # Without --calculate-per-token-loss each micro-batch is averaged on its own: with uneven
    # masks that is a different loss, which shows the data really is uneven.
    assert _rel(runs[(False, 2)]["grad_norm"], runs[(False, 8)]["grad_norm"]) > 1e-4


def _resume_runs(rank, world_size, save_dir):
    flags = BASE + ["--tensor-model-parallel-size", "2", "--hidden-dropout", "0.1", "--attention-dropout", "0.1",
                    "--save", save_dir, "--save-interval", "4", "--log-interval", "1"]
    straight = run_pretrain(flags)
    with open(os.path.join(save_dir, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("4")  # pretend the run stopped after iteration 4
    resumed = run_pretrain(flags + ["--load", save_dir])
    return straight, resumed


def test_resume_from_checkpoint_is_exact(tmp_path):
    straight, resumed = run_distributed(_resume_runs, 2, str(tmp_path / "ckpt"))[-1]
    assert len(resumed["loss"]) == 4
    assert resumed["loss"] == straight["loss"][4:]
    assert resumed["grad_norm"] == straight["grad_norm"][4:]
    assert resumed["lr"] == straight["lr"][4:]


def _overflow_run(rank, world_size):
    import torch.distributed as dist

    def inject(model, iteration):
        if iteration == 3 and dist.get_rank() == 1:
            param = next(p for p in model[0].parameters())
            param.main_grad.view(-1)[0] = float("inf")

    flags = BASE + ["--fp16", "--initial-loss-scale", "1024", "--hysteresis", "1", "--train-iters", "6"]
    return run_pretrain(flags, finalize_hook=inject)


def test_fp16_overflow_on_one_rank_skips_the_step_everywhere():
    records = run_distributed(_overflow_run, 2)  # data-parallel size 2: the ranks hold replicas
    for rec in records:
        assert rec["skipped"] == [False, False, True, False, False, False]
        assert rec["lr"][3] == rec["lr"][2], "a skipped step must not advance the LR schedule"
        assert rec["loss_scale"][2] == rec["loss_scale"][1] / 2
        assert all(math.isfinite(x) for x in rec["loss"])
    assert records[0]["loss"] == records[1]["loss"]


def _evaluation_progress(rank, world_size):
    from megatron.training import evaluation
    evaluation.PROGRESS_AFTER_S = 0.0  # as if every evaluation ran long
    argv = BASE + ["--train-iters", "4", "--eval-interval", "2", "--eval-iters", "3", "--log-interval", "1"]
    return run_pretrain(argv)["stdout"]


def test_the_final_evaluation_prints_progress_lines():
    stdout = run_distributed(_evaluation_progress, 1)[0]
    lines = [line for line in stdout.splitlines() if line.startswith("evaluating on the ")]
    # The final validation and test evaluations report each batch (--log-interval 1) with an ETA;
    # the periodic one during training stays quiet, as in Megatron.
    assert [line.split(" |")[0] for line in lines] == [
        f"evaluating on the {split} set: batch {i}/3" for split in ("validation", "test") for i in (1, 2, 3)]
    assert all("ETA" in line for line in lines)
