"""Shared pieces of the flag-coverage tests (tests/distributed/test_flag_coverage*.py): a tiny
model's flags, a small learnable corpus, and run_flags(), which runs the real pretrain() through
tests/pretrain_runner.py and records what the checks need."""
import os
import re
import signal

import numpy as np
import pytest

from tests.pretrain_runner import run_pretrain

# A tiny GPT-2-style model: 2 micro-batches per step, no dropout, fp32. The data is a small
# .bin/.idx corpus (see make_corpus): building its indices is much faster than --mock-data's.
MODEL = ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
         "--micro-batch-size 2 --global-batch-size 4 --lr 5e-3 --train-iters 3 --log-interval 1 "
         "--tokenizer-type NullTokenizer --vocab-size 500 --make-vocab-size-divisible-by 8 --hidden-dropout 0 "
         "--attention-dropout 0 --eval-iters 0 --seed 1234 --num-workers 0").split()
VOCAB, EOD = 500, 500  # NullTokenizer's end-of-document id is --vocab-size


def make_corpus(prefix, documents=300, seed=0, eod=EOD):
    """Documents of 3 to 40 tokens counting up through 20 ids (learnable within a few steps), each ending
    in ``eod``, written as PREFIX.bin / PREFIX.idx."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(documents):
        start, length = int(rng.integers(0, 20)), int(rng.integers(3, 40))
        doc = np.append((start + np.arange(length)) % 20, eod).astype(np.uint16)
        builder.add_document(doc, [len(doc)])
    builder.finalize(prefix + ".idx")
    return prefix


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("corpus") / "text_document"))


def base_argv(corpus, split="100,0,0"):
    """MODEL trained on ``corpus`` split train,valid,test as given."""
    return MODEL + ["--data-path", corpus, "--split", split]


def with_flags(argv, **values):
    """``argv`` with flags replaced, by dest: with_flags(argv, train_iters=6); lr=None drops --lr; a list
    gives several values."""
    argv = list(argv)
    for dest, value in values.items():
        flag = "--" + dest.replace("_", "-")
        if flag in argv:
            i = argv.index(flag)
            end = i + 1
            while end < len(argv) and not argv[end].startswith("--"):
                end += 1
            del argv[i:end]
        if value is None:
            continue
        argv += [flag] + ([] if value is True else [str(v) for v in (value if isinstance(value, list) else [value])])
    return argv


def run_flags(argv, finalize_hook=None, keep_batches=0):
    """run_pretrain(argv) plus what it does not record: the optimizer's parameter groups before each
    step, the first ``keep_batches`` batches of get_batch, and the exit code when training stops
    with sys.exit (--exit-interval, --exit-duration-in-mins, a signal)."""
    from megatron.training.recipes import gpt as pretrain_gpt
    from megatron.training import training

    seen = {"groups": [], "batches": [], "steps": 0, "step_losses": [], "exit_code": None, "get_batch_calls": 0,
            "sample_keys": None}
    real_step, real_get_batch = training.train_step, pretrain_gpt.get_batch
    real_provider = pretrain_gpt.train_valid_test_datasets_provider

    def step(forward_step_func, data_iterator, model, optimizer, scheduler, config, state=None):
        seen["optimizer"] = type(optimizer.optimizer).__name__
        seen["groups"].append([{"lr": g["lr"], "wd": g["weight_decay"], "decoupled": g.get("is_decoupled_lr", False),
                                "numel": sum(p.numel() for p in g["params"]), "betas": g.get("betas"),
                                "eps": g.get("eps"), "momentum": g.get("momentum")}
                               for g in optimizer.param_groups])
        out = real_step(forward_step_func, data_iterator, model, optimizer, scheduler, config, state)
        seen["steps"] += 1
        seen["step_losses"].append(out[0].get("lm loss"))
        return out

    def provider(num_samples):
        datasets = real_provider(num_samples)
        if datasets[0] is not None:
            seen["sample_keys"] = sorted(datasets[0][0].keys())
        return datasets
    provider.is_distributed = real_provider.is_distributed

    def get_batch(data_iterator, *rest):
        seen["get_batch_calls"] += 1
        batch = real_get_batch(data_iterator, *rest)
        if len(seen["batches"]) < keep_batches:
            seen["batches"].append([None if t is None else t.detach().cpu() for t in batch])
        return batch

    training.train_step, pretrain_gpt.get_batch = step, get_batch
    pretrain_gpt.train_valid_test_datasets_provider = provider
    try:
        record = run_pretrain(argv, finalize_hook)  # a sys.exit of the exit flags comes back as exit_code
    finally:
        training.train_step, pretrain_gpt.get_batch = real_step, real_get_batch
        pretrain_gpt.train_valid_test_datasets_provider = real_provider
    seen["exit_code"] = record.get("exit_code")
    record.update(seen)
    return record


def inner_model(model_chunks):
    """The GPTModel inside the DDP / Float16Module wrappers of the first model chunk."""
    from megatron.core.utils import unwrap_model
    return unwrap_model(model_chunks[0])


def near(a, b, tol=1e-5):
    """Same shape and equal within ``tol`` relative to the largest |b| (or absolute below 1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= tol * max(1.0, float(np.abs(b).max()))


def close(a, b, rtol, atol=0.0):
    """Same shape and equal within ``rtol`` relative to each element (plus ``atol``, for zeros)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= rtol * np.abs(b) + atol))


# What changes when the same math runs in another order (ATEN_CPU_CAPABILITY default / avx2 / avx512,
# oneDNN's ISA, the layout): up to 2e-7 of an fp32 loss in these short runs. DIFFERS is 50x that, and
# every flag checked with differs() moves its run's losses by ~1e-3 or more (100x DIFFERS); a flag whose
# effect is smaller is checked on the tensor it changes instead (--use-rope-scaling,
# --weight-decay-incr-style, --fp16-lm-cross-entropy, --no-load-rng).
DIFFERS = 1e-5


def differs(a, b):
    """Apart by more than DIFFERS relative to the largest |b| (or absolute below 1): a real effect,
    never float noise."""
    return not near(a, b, tol=DIFFERS)


def iteration_fields(stdout, field):
    """The values of `field` in the iteration log lines, in order."""
    return [float(v) for v in re.findall(rf"\| {re.escape(field)}: +([-+.0-9Ee]+)", stdout)]


def sigterm_at(iteration_to_signal):
    """A finalize hook that sends this process SIGTERM during the given iteration."""
    def hook(model_chunks, iteration):
        if iteration == iteration_to_signal:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


def tracker_of(directory):
    """The iteration named by a checkpoint directory's tracker file."""
    with open(os.path.join(directory, "latest_checkpointed_iteration.txt")) as f:
        return f.read().strip()
