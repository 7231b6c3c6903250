"""Pipeline parallelism through the full pretrain() driver matches the single-process run.

For GPT-2 style (tied embeddings, learned positions, LayerNorm) and Llama style (untied, RoPE,
SwiGLU, GQA, RMSNorm): the losses and printed grad norms of the first 5 iterations and every
gradient after step 1 (gathered by global parameter name over stages and tensor-parallel shards)
equal the single-process model's within 1e-5 relative, in fp32 with clipping active, on PP=2 and
PP=4, interleaved, uneven first/last stages, PP x DP and TP=2 x PP=2 with sequence parallelism; so
do the validation losses (forward-only schedules).
Dropping the embedding-group all-reduce makes the check fail; a PP run resumes exactly.
"""
import os
import re

import numpy as np
import pytest
import torch

from tests.harness import run_distributed
from tests.pretrain_runner import full_tensors_by_global_name, run_pretrain

ITERS = 5
# Clipping at 0.2 is below every step's grad norm, so it is active. Adam's eps is 1e-4 for the reason
# test_tp_parity.py gives: at 1e-8 Adam amplifies float reordering noise in near-zero gradient entries.
BASE = ("--num-layers 8 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        "--micro-batch-size 1 --global-batch-size 8 --lr 3e-3 --lr-warmup-iters 1 --lr-decay-style cosine "
        f"--train-iters {ITERS} --log-interval 1 --mock-data --vocab-size 4999 --make-vocab-size-divisible-by 8 "
        "--hidden-dropout 0 --attention-dropout 0 --eval-iters 1 --eval-interval 5 --seed 1234 --clip-grad 0.2 --adam-eps 1e-4 "
        "--num-workers 0").split()
VARIANTS = {
    "gpt2": [],
    "llama": ("--swiglu --normalization RMSNorm --position-embedding-type rope --disable-bias-linear "
              "--untie-embeddings-and-output-weights --group-query-attention --num-query-groups 2 "
              "--ffn-hidden-size 48").split(),
}
LAYOUTS = {
    2: {"pp2": "--pipeline-model-parallel-size 2",
        "pp2-interleaved": "--pipeline-model-parallel-size 2 --num-virtual-stages-per-pipeline-rank 2",
        "pp2-uneven": "--pipeline-model-parallel-size 2 --decoder-first-pipeline-num-layers 3",
        # Mock micro-batches have equal token counts, so the per-token mean equals the mean of
        # means: the same gradients, if every stage divides by the token count of the last.
        "pp2-per-token": "--pipeline-model-parallel-size 2 --calculate-per-token-loss"},
    4: {"pp4": "--pipeline-model-parallel-size 4",
        "pp4-interleaved": "--pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 1",
        "pp4-uneven": "--pipeline-model-parallel-size 4 --decoder-first-pipeline-num-layers 1 "
                      "--decoder-last-pipeline-num-layers 3",
        "pp2-dp2": "--pipeline-model-parallel-size 2",
        "tp2-pp2-sp": "--tensor-model-parallel-size 2 --pipeline-model-parallel-size 2 --sequence-parallel"},
}


def _grads_after_step_1(store):
    """A finalize hook that keeps, after step 1, this rank's final gradients by global name (a tied
    output layer's under its embedding's name: the two must be equal)."""
    def hook(model, iteration):
        from megatron.core import parallel_state as ps
        if iteration != 1 or ps.get_data_parallel_rank() != 0:
            return
        for name, stage, grad in full_tensors_by_global_name(model, lambda p: p.main_grad):
            store[(name, stage)] = grad
    return hook


def _printed(stdout: str, field: str):
    return [float(v) for v in re.findall(rf"\| {field}: ([-+0-9.Ee]+) \|", stdout)]


def _train(argv):
    grads = {}
    record = run_pretrain(argv, _grads_after_step_1(grads))
    record["grads"] = grads
    return record


def _runs(rank, world_size, layouts, break_embedding_group=False):
    if break_embedding_group:
        import importlib
        finalize = importlib.import_module("megatron.core.distributed.finalize_model_grads")
        finalize._allreduce_tied_embedding_grads = lambda model, pg: None
    return {(variant, name): _train(BASE + flags + layout.split())
            for name, layout in layouts.items() for variant, flags in VARIANTS.items()}


def _full_grads(records):
    """Every rank's gradients merged: {(global name, pipeline rank): full tensor}."""
    return {key: grad for grads in records for key, grad in grads.items()}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _mismatches(got_records, ref_record, tol=1e-5):
    """What differs from the reference, as readable strings (empty: the run matches)."""
    problems = []
    last = got_records[-1]  # the last rank holds the losses and prints the log lines
    if _rel(last["loss"], ref_record["loss"]) > tol:
        problems.append(f"losses {last['loss']} vs {ref_record['loss']}")
    if _rel(last["grad_norm"], ref_record["grad_norm"]) > tol:
        problems.append(f"grad norms {last['grad_norm']} vs {ref_record['grad_norm']}")
    printed, ref_printed = _printed(last["stdout"], "lm loss"), _printed(ref_record["stdout"], "lm loss")
    if len(printed) != ITERS or _rel(printed, ref_printed) > tol:
        problems.append(f"printed losses {printed} vs {ref_printed}")
    norms, ref_norms = _printed(last["stdout"], "grad norm"), _printed(ref_record["stdout"], "grad norm")
    if len(norms) != ITERS or np.abs(np.asarray(norms) - np.asarray(ref_norms)).max() > 2e-3:
        problems.append(f"printed grad norms {norms} vs {ref_norms}")
    evaluated = re.findall(r"lm loss value: ([-+0-9.Ee]+)", last["stdout"])
    ref_evaluated = re.findall(r"lm loss value: ([-+0-9.Ee]+)", ref_record["stdout"])
    if not evaluated or len(evaluated) != len(ref_evaluated) or \
            _rel([float(v) for v in evaluated], [float(v) for v in ref_evaluated]) > tol:
        problems.append(f"validation losses {evaluated} vs {ref_evaluated}")
    reference = {name: grad for (name, _), grad in _full_grads([ref_record["grads"]]).items()}
    got = _full_grads([r["grads"] for r in got_records])
    if {name for name, _ in got} != set(reference):
        problems.append(f"parameters {sorted({n for n, _ in got} ^ set(reference))} differ")
    for (name, stage), grad in got.items():
        if name in reference and _rel(grad, reference[name]) > tol:
            problems.append(f"gradient of {name} on stage {stage}: {_rel(grad, reference[name]):.2e} off")
    return problems


@pytest.fixture(scope="module")
def reference():
    return run_distributed(_runs, 1, {"single": ""})[0]


@pytest.mark.parametrize("world_size", [2, 4])
def test_pipeline_layouts_match_the_single_process_run(reference, world_size):
    per_rank = run_distributed(_runs, world_size, LAYOUTS[world_size])
    for (variant, layout) in per_rank[0]:
        got = [records[(variant, layout)] for records in per_rank]
        ref = reference[(variant, "single")]
        assert min(ref["grad_norm"]) > 0.2, "the clip threshold must be below the grad norm so clipping happens"
        problems = _mismatches(got, ref)
        assert not problems, (variant, layout, problems)
        if layout == "pp2-interleaved":
            assert "pipeline schedule: interleaved 1F1B, 2 virtual stages per rank over 2 stages" in got[-1]["stdout"]


def test_dropping_the_embedding_group_all_reduce_is_caught(reference):
    per_rank = run_distributed(_runs, 2, {"pp2": LAYOUTS[2]["pp2"]}, True)
    tied = [per_rank[r][("gpt2", "pp2")] for r in range(2)]
    problems = _mismatches(tied, reference[("gpt2", "single")])
    assert any("embedding.word_embeddings.weight" in p for p in problems), problems
    # The untied model has no embedding group traffic: it still matches.
    untied = [per_rank[r][("llama", "pp2")] for r in range(2)]
    assert not _mismatches(untied, reference[("llama", "single")])


def _resume_runs(rank, world_size, save_dir):
    flags = (BASE + VARIANTS["gpt2"] + LAYOUTS[2]["pp2-interleaved"].split()
             + ["--hidden-dropout", "0.1", "--attention-dropout", "0.1", "--save", save_dir, "--save-interval", "2"])
    straight = run_pretrain(flags)
    with open(os.path.join(save_dir, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("2")  # pretend the run stopped after iteration 2
    resumed = run_pretrain(flags + ["--load", save_dir])
    return straight, resumed


def test_interleaved_pipeline_run_resumes_exactly(tmp_path):
    straight, resumed = run_distributed(_resume_runs, 2, str(tmp_path / "ckpt"))[-1]
    assert len(resumed["loss"]) == ITERS - 2
    assert resumed["loss"] == straight["loss"][2:]
    assert resumed["grad_norm"] == straight["grad_norm"][2:]
    assert torch.tensor(straight["loss"]).isfinite().all()
