"""Flag coverage (see test_flag_coverage.py): mixed precision, the training loop's own switches,
logging and TensorBoard, and the flags that need several ranks, through short real runs of pretrain()."""
import gc
import glob
import math
import os

import pytest
import torch

from tests.distributed.flag_runs import (  # noqa: F401  (corpus: a pytest fixture)
    base_argv, corpus, inner_model, iteration_fields, near, run_flags, sigterm_at, tracker_of,
    with_flags)
from tests.harness import run_distributed


# ------------------------------------------------------------------------------------------------
# Mixed precision, the training loop's own switches, and logging.

def _precision_probe(store, bad_iterations=(), value=float("inf")):
    """Records dtypes at iteration 1, and the dtype of the per-token losses the model returns in
    iteration 2; writes ``value`` into a gradient at ``bad_iterations``."""
    def record_loss_dtype(module, inputs, output):
        store.setdefault("loss_dtype", str(output.dtype))

    def hook(model_chunks, iteration):
        param = next(p for p in model_chunks[0].parameters())
        if iteration == 1:
            store["param_dtype"] = str(param.dtype)
            store["grad_dtype"] = str(param.main_grad.dtype)
            store["handle"] = inner_model(model_chunks).register_forward_hook(record_loss_dtype)
        elif iteration == 2:
            store.pop("handle").remove()
        if iteration in bad_iterations:
            param.main_grad.view(-1)[0] = value
    return hook


def _gc_probe(store):
    """Garbage collections between the end of iteration 2 and the end of iteration 3 (generations),
    and whether automatic collection was on."""
    def on_gc(phase, info):
        if phase == "start" and store.get("counting"):
            store["generations"].append(info["generation"])

    def hook(model_chunks, iteration):
        if iteration == 2:
            store.update(generations=[], counting=True, automatic=gc.isenabled())
            gc.callbacks.append(on_gc)
        elif iteration == 3:
            store["counting"] = False
            gc.callbacks.remove(on_gc)
    return hook


def _params_norm_probe(store):
    def hook(model_chunks, iteration):
        import logging
        store["logging_level"] = logging.getLogger().level
        if iteration == 3:  # the parameters as iteration 2 left them
            store["params_norm"] = math.sqrt(sum(float(p.detach().double().pow(2).sum())
                                                 for p in inner_model(model_chunks).parameters()))
    return hook


def _scalars(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(directory)
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _loop_and_logging_runs(rank, world_size, corpus, workdir):
    import logging
    base = base_argv(corpus)
    out = {}
    precision = {
        "fp16": (["--fp16", "--initial-loss-scale", "1024", "--loss-scale-window", "2", "--train-iters", "5"], ()),
        "fp16_fp32_grads": (["--fp16", "--initial-loss-scale", "1024", "--loss-scale-window", "2", "--train-iters",
                             "5", "--accumulate-allreduce-grads-in-fp32"], ()),
        "fp16_ce": (["--fp16", "--initial-loss-scale", "1024", "--loss-scale-window", "2", "--train-iters", "5",
                     "--fp16-lm-cross-entropy"], ()),
        "fp16_static": (["--fp16", "--loss-scale", "128"], ()),
        "hysteresis": (["--fp16", "--initial-loss-scale", "1024", "--hysteresis", "2"], (2,)),
        "min_scale": (["--fp16", "--initial-loss-scale", "1024", "--hysteresis", "1", "--min-loss-scale", "512",
                       "--train-iters", "4"], (2, 3)),
        "bf16": (["--bf16"], ()),
        "bf16_grads": (["--bf16", "--grad-reduce-in-bf16"], ()),
    }
    for name, (flags, bad) in precision.items():
        probe = {}
        record = run_flags(base + flags, _precision_probe(probe, bad))
        out[name] = {"loss": record["loss"], "skipped": record["skipped"], "loss_scale": record["loss_scale"], **probe}

    out["nan_skipped"] = run_flags(base + ["--no-check-for-nan-in-loss-and-grad"],
                              _precision_probe({}, (2,), float("nan")))
    try:
        run_flags(base, _precision_probe({}, (2,), float("nan")))
        out["nan_stops"] = "no error"
    except RuntimeError as error:
        out["nan_stops"] = str(error)

    evaluation = with_flags(base, split="80,20,0", train_iters=4) + ["--eval-interval", "2", "--eval-iters", "1"]
    for name, flags in (("gc_manual", ["--manual-gc", "--manual-gc-interval", "1"]),
                        ("gc_manual_no_eval", ["--manual-gc", "--manual-gc-interval", "1", "--no-manual-gc-eval"]),
                        ("gc_automatic", [])):
        probe = {}
        run_flags(evaluation + flags, _gc_probe(probe))
        out[name] = probe

    plain = with_flags(base, train_iters=4)
    out["plain"] = run_flags(plain)
    probe = {}
    out["fields"] = run_flags(with_flags(plain, log_interval=2) + [
        "--log-params-norm", "--log-num-zeros-in-grad", "--log-throughput", "--timing-log-level", "2",
        "--timing-log-option", "all", "--no-barrier-with-level-1-timing", "--logging-level", "10", "--profile",
        "--empty-unused-memory-level", "2", "--calculate-per-token-loss"], _params_norm_probe(probe))
    logging.getLogger().setLevel(logging.WARNING)
    out["fields"]["probe"] = probe

    tensorboard = os.path.join(workdir, "tb")
    out["tensorboard"] = run_flags(evaluation + [
        "--tensorboard-dir", tensorboard, "--tensorboard-log-interval", "2", "--tensorboard-queue-size", "5",
        "--log-timers-to-tensorboard", "--no-log-loss-scale-to-tensorboard", "--log-validation-ppl-to-tensorboard",
        "--log-memory-to-tensorboard", "--log-world-size-to-tensorboard", "--timing-log-level", "1"])
    out["tb"] = _scalars(tensorboard)
    default_tensorboard = os.path.join(workdir, "tb_default")
    run_flags(evaluation + ["--tensorboard-dir", default_tensorboard])
    out["tb_default"] = _scalars(default_tensorboard)

    traces = os.path.join(workdir, "traces")
    run_flags(with_flags(base, train_iters=4) + ["--profile", "--use-pytorch-profiler", "--profile-step-start", "1",
                                       "--profile-step-end", "2", "--profile-ranks", "0", "--tensorboard-dir", traces])
    out["traces"] = [os.path.relpath(p, traces) for p in glob.glob(os.path.join(traces, "**", "*"), recursive=True)]

    wandb_flags = ["--wandb-project", "flags", "--wandb-entity", "tests", "--wandb-exp-name", "coverage",
                   "--wandb-save-dir", os.path.join(workdir, "wandb")]
    os.environ["WANDB_MODE"] = "offline"  # where wandb is installed: no account, no network
    try:
        out["wandb"] = run_flags(base + wandb_flags)["steps"]
    except Exception as error:  # noqa: BLE001 (the error's type and text are what is checked)
        out["wandb"] = f"{type(error).__name__}: {error}"
    return {name: ({k: v for k, v in value.items() if k not in ("batches", "groups")}
                   if isinstance(value, dict) else value) for name, value in out.items()}


def test_precision_training_loop_and_logging_flags(corpus, tmp_path):
    runs = run_distributed(_loop_and_logging_runs, 1, corpus, str(tmp_path))[0]
    fp16 = runs["fp16"]
    assert fp16["param_dtype"] == "torch.float16" and fp16["grad_dtype"] == "torch.float16"
    assert fp16["loss_scale"] == [1024, 2048, 2048, 4096, 4096]  # doubles after 2 clean steps
    assert runs["fp16_fp32_grads"]["grad_dtype"] == "torch.float32"
    assert near(runs["fp16_fp32_grads"]["loss"], fp16["loss"], 1e-2)
    # --fp16-lm-cross-entropy keeps the logits in fp16 for the loss; its effect on the mean loss
    # (3e-4) is too close to rounding to be the check: the dtype of the per-token losses is.
    assert fp16["loss_dtype"] == "torch.float32" and runs["fp16_ce"]["loss_dtype"] == "torch.float16"
    assert near(runs["fp16_ce"]["loss"], fp16["loss"], 1e-2)
    assert runs["fp16_static"]["loss_scale"] == [128, 128, 128]
    # Hysteresis 2: the first overflow skips the step but keeps the scale.
    assert runs["hysteresis"]["skipped"] == [False, True, False] and runs["hysteresis"]["loss_scale"] == [1024] * 3
    # Hysteresis 1: each overflow halves the scale, down to --min-loss-scale.
    assert runs["min_scale"]["skipped"] == [False, True, True, False]
    assert runs["min_scale"]["loss_scale"] == [1024, 512, 512, 512]
    bf16 = runs["bf16"]
    assert bf16["param_dtype"] == "torch.bfloat16" and bf16["grad_dtype"] == "torch.float32"
    assert runs["bf16_grads"]["grad_dtype"] == "torch.bfloat16"
    assert all(math.isfinite(x) for name in ("bf16", "bf16_grads") for x in runs[name]["loss"])

    # A NaN gradient stops the run, naming the iteration; with the check off the step is skipped.
    assert "iteration 2" in runs["nan_stops"] and "--no-check-for-nan-in-loss-and-grad" in runs["nan_stops"]
    assert runs["nan_skipped"]["skipped"] == [False, True, False]

    # Manual GC: automatic collection off; a full collection every step (interval 1) and, around the
    # evaluation at iteration 2, a full one before and a young-generation one after.
    assert runs["gc_manual"]["automatic"] is False and runs["gc_manual"]["generations"] == [2, 0, 2]
    assert runs["gc_manual_no_eval"]["generations"] == [2]
    assert runs["gc_automatic"]["automatic"] is True

    fields = runs["fields"]
    # Logging, profiling and memory flags change nothing, bit for bit. (--calculate-per-token-loss
    # is among them: with 2 unmasked micro-batches of 32 tokens, the mean of means and the token-
    # weighted mean differ only by divisions by powers of two, which are exact.)
    assert fields["loss"] == runs["plain"]["loss"]
    lines = [line for line in fields["stdout"].splitlines() if " iteration " in line and "lm loss:" in line]
    assert len(lines) == 2 and "iteration        2/" in lines[0]  # --log-interval 2
    params_norm = iteration_fields(fields["stdout"], "params norm")
    assert params_norm[0] == pytest.approx(fields["probe"]["params_norm"], rel=1e-3)
    assert len(iteration_fields(fields["stdout"], "num zeros")) == 2
    assert len(iteration_fields(fields["stdout"], "throughput per GPU (TFLOP/s/GPU)")) == 2
    plain_stdout = runs["plain"]["stdout"]
    assert "params norm" not in plain_stdout and "num zeros" not in plain_stdout and "TFLOP/s/GPU)" not in plain_stdout
    assert "times across ranks (ms)" in fields["stdout"] and "forward-backward" in fields["stdout"]
    assert "forward-backward" not in plain_stdout  # --timing-log-level 0 prints no timers
    assert fields["probe"]["logging_level"] == 10

    scalars, defaults = runs["tb"], runs["tb_default"]
    assert [step for step, _ in scalars["lm loss"]] == [2, 4]  # --tensorboard-log-interval 2
    assert [step for step, _ in defaults["lm loss"]] == [1, 2, 3, 4]
    assert "lm loss vs samples" in scalars and "learning-rate" in scalars and "batch-size" in scalars
    assert "loss-scale" not in scalars and "loss-scale" in defaults
    assert scalars["world-size"][0][1] == 1 and "world-size" not in defaults
    assert "iteration-time" in scalars and "forward-backward-time" in scalars and "iteration-time" not in defaults
    assert "lm loss validation ppl" in scalars and "lm loss validation ppl" not in defaults
    assert "lm loss validation" in defaults

    assert any(name.endswith(".pt.trace.json") for name in runs["traces"]), runs["traces"]

    try:
        import wandb  # noqa: F401
        assert runs["wandb"] == 3
    except ImportError:
        assert "--wandb-project" in runs["wandb"] and "pip install wandb" in runs["wandb"]




# ------------------------------------------------------------------------------------------------
# Flags that need several ranks: data-parallel replicas, tensor parallelism, a signal on one rank.

def _replica_probe(store, corrupt_at=None):
    """Records this rank's torch seed and a checksum of the weights at iteration 1; at
    ``corrupt_at`` nudges one weight on the last rank only."""
    def hook(model_chunks, iteration):
        import torch.distributed as dist
        if iteration == 1:
            store["seed"] = torch.initial_seed()
            store["checksum"] = sum(float(p.detach().double().sum()) for p in inner_model(model_chunks).parameters())
        if iteration == corrupt_at and dist.get_rank() == dist.get_world_size() - 1:
            with torch.no_grad():
                next(iter(inner_model(model_chunks).parameters())).view(-1)[0] += 1e-3
    return hook


def _multi_rank_runs(rank, world_size, corpus, workdir):
    base = base_argv(corpus)  # data-parallel size 2: one micro-batch of 2 per rank and step
    out = {}
    for name, flags in (("dp", []),
                        ("dp_random_init", ["--data-parallel-random-init",
                                            "--check-weight-hash-across-dp-replicas-interval", "1"])):
        probe = {}
        out[name] = {"loss": run_flags(base + flags, _replica_probe(probe))["loss"], **probe}
    try:
        run_flags(base + ["--check-weight-hash-across-dp-replicas-interval", "1"], _replica_probe({}, corrupt_at=2))
        out["hash_mismatch"] = "no error"
    except RuntimeError as error:
        out["hash_mismatch"] = str(error)
    out["average_in_collective"] = run_flags(base + ["--ddp-average-in-collective"])["loss"]
    out["tp2"] = run_flags(base + ["--tensor-model-parallel-size", "2", "--sequence-parallel", "--use-tp-pp-dp-mapping",
                              "--distributed-timeout-minutes", "5", "--distributed-backend", "gloo",
                              "--pipeline-model-parallel-size", "1", "--context-parallel-size", "1",
                              "--expert-model-parallel-size", "1", "--local-rank", str(rank)])["loss"]
    distributed = run_flags(base + ["--tensor-model-parallel-size", "2", "--recompute-granularity", "full",
                                    "--recompute-method", "uniform", "--recompute-num-layers", "1",
                                    "--distribute-saved-activations"])
    out["tp2_distribute_saved"] = {"loss": distributed["loss"], "stdout": distributed["stdout"]}
    save = os.path.join(workdir, "signal")
    hook = sigterm_at(2) if rank == 0 else None  # only rank 0 is told to stop
    signalled = run_flags(with_flags(base, train_iters=6) + ["--exit-signal-handler", "--save", save, "--save-interval", "100"],
                     hook)
    out["signal"] = {"steps": signalled["steps"], "exit_code": signalled["exit_code"], "tracker": tracker_of(save)}
    return out


def test_flags_that_need_several_ranks(corpus, tmp_path):
    ranks = run_distributed(_multi_rank_runs, 2, corpus, str(tmp_path))
    first, last = ranks[0], ranks[-1]
    # Same seed on every replica by default; --data-parallel-random-init gives each its own stream,
    # while the weights are still made equal (broadcast) and stay equal (hash check each step).
    assert first["dp"]["seed"] == last["dp"]["seed"]
    assert first["dp_random_init"]["seed"] != last["dp_random_init"]["seed"]
    assert first["dp_random_init"]["checksum"] == last["dp_random_init"]["checksum"]
    assert first["dp_random_init"]["loss"] == last["dp_random_init"]["loss"]
    for rank in ranks:
        assert "differ across data-parallel replicas" in rank["hash_mismatch"], rank["hash_mismatch"]
    assert near(last["average_in_collective"], last["dp"]["loss"], 1e-6)
    # Tensor parallelism (with sequence parallelism) computes the data-parallel run's numbers.
    assert near(last["tp2"], last["dp"]["loss"], 1e-5), (last["tp2"], last["dp"]["loss"])
    # Full recompute keeping 1/TP of each saved input (tests/distributed/test_recompute.py measures
    # the split) still computes the same numbers; the memory breakdown says which recompute ran.
    assert near(last["tp2_distribute_saved"]["loss"], last["dp"]["loss"], 1e-5)
    for rank in ranks:
        breakdown = [line for line in rank["tp2_distribute_saved"]["stdout"].splitlines()
                     if "memory breakdown (MB)" in line]
        assert len(breakdown) == 1 and "recompute: full uniform 1" in breakdown[0], breakdown
    for rank in ranks:
        assert rank["signal"] == {"steps": 2, "exit_code": 0, "tracker": "2"}
