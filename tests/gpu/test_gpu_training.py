"""GPU runs of the real driver (NCCL, bf16): tensor + sequence parallel matches one GPU, and a
single-GPU run reports MFU and memory. Skipped without CUDA (two GPUs for the parallel test)."""
import math

import numpy as np
import pytest
import torch

from tests.harness import run_distributed
from tests.pretrain_runner import run_pretrain

TINY = ("--num-layers 4 --hidden-size 256 --num-attention-heads 8 --group-query-attention --num-query-groups 4 "
        "--ffn-hidden-size 704 --swiglu --normalization RMSNorm --position-embedding-type rope "
        "--disable-bias-linear --untie-embeddings-and-output-weights --seq-length 256 --micro-batch-size 4 "
        "--global-batch-size 16 --lr 1e-3 --lr-warmup-iters 2 --train-iters 12 --log-interval 4 --mock-data "
        "--vocab-size 8191 --hidden-dropout 0 --attention-dropout 0 --eval-iters 0 --seed 1234 "
        "--clip-grad 1.0 --num-workers 0").split()
needs_two = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _runs(rank, world_size, layouts):
    return [run_pretrain(TINY + flags) for flags in layouts]


@needs_two
def test_tensor_and_sequence_parallel_match_one_gpu():
    one_fp32, one_bf16 = run_distributed(_runs, 1, [[], ["--bf16"]], backend="nccl")[0]
    tp_fp32, tp_bf16 = run_distributed(
        _runs, 2, [["--tensor-model-parallel-size", "2", "--sequence-parallel"],
                   ["--tensor-model-parallel-size", "2", "--sequence-parallel", "--bf16"]], backend="nccl")[-1]
    # fp32 on GPUs: only the order of floating-point sums differs.
    assert _rel(tp_fp32["loss"], one_fp32["loss"]) < 1e-4, (tp_fp32["loss"], one_fp32["loss"])
    assert _rel(tp_fp32["grad_norm"], one_fp32["grad_norm"]) < 1e-3
    # bf16: the same model within bf16 rounding, and it learns.
    assert _rel(tp_bf16["loss"], one_bf16["loss"]) < 2e-2, (tp_bf16["loss"], one_bf16["loss"])
    assert _rel(tp_bf16["loss"], one_fp32["loss"]) < 3e-2
    assert tp_bf16["loss"][-1] < tp_bf16["loss"][0] - 1.0


def _single(rank, world_size):
    return run_pretrain(TINY + ["--bf16", "--log-throughput"])


def test_single_gpu_bf16_reports_mfu_and_memory():
    record = run_distributed(_single, 1, backend="nccl")[0]
    assert all(math.isfinite(x) for x in record["loss"])
    assert record["loss"][-1] < record["loss"][0] - 1.0
    out = record["stdout"]
    assert "MFU uses the PaLM convention" in out
    assert "MFU: " in out and "peak memory (GiB): " in out and "throughput per GPU (TFLOP/s/GPU)" in out
    assert "memory (MB) | allocated:" in out
