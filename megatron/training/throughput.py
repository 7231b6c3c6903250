"""Speed figures for the logs: Megatron's TFLOP/s count, our MFU (PaLM convention), ETA, memory.

Two FLOP counts live here on purpose:
- ``num_floating_point_operations`` is Megatron-LM's own count behind "throughput per GPU
  (TFLOP/s/GPU)" (causal attention counted at half the square, logits included), so our TFLOP/s
  matches what Megatron users see for the same model;
- ``palm_flops_per_token`` is the PaLM convention behind our MFU, the one other projects use:

      flops_per_token = 6 * N + 12 * L * h * s
      N = trainable parameters except the input embedding table (the output layer counts)
      MFU = flops_per_token * tokens_per_second_per_gpu / dense_peak_flops_of_the_gpu
"""
import math
import re
import resource
from typing import Dict, Optional, Tuple, Union

import torch
import torch.distributed as dist

from megatron.core import device
from megatron.core.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Megatron's FLOP count (dense GPT, GQA, SwiGLU, MoE top-k, MTP), forward + backward.
# ---------------------------------------------------------------------------------------------


def _moe_layer_counts(args) -> Tuple[int, int, int, int]:
    """(dense layers, MoE layers, experts each token is routed to, last layer is MoE)."""
    if args.num_experts is None:
        return args.num_layers, 0, 0, 0
    freq = args.moe_layer_freq
    if isinstance(freq, int):
        pattern = [1 if i % freq == 0 else 0 for i in range(args.num_layers)]
    elif isinstance(freq, (list, tuple)):
        pattern = list(freq)
    else:
        raise ConfigError(f"--moe-layer-freq must be an int or a list of 0/1, got {freq!r}")
    if len(pattern) != args.num_layers:
        raise ConfigError(f"--moe-layer-freq lists {len(pattern)} layers but --num-layers is {args.num_layers}")
    moe = sum(pattern)
    return args.num_layers - moe, moe, args.moe_router_topk, pattern[-1]


def num_floating_point_operations(args, batch_size: int) -> float:
    """FLOPs of one training step on ``batch_size`` sequences, counted as Megatron-LM counts them.

    Every GEMM costs 2*m*n*k and runs three times (forward, data grad, weight grad). Attention
    scores and their product with V cost seq_length/2 per query position (causal: half the square).
    """
    if args.multi_latent_attention:
        raise ConfigError("the FLOPs count has no --multi-latent-attention formula; run without --log-throughput")
    h, s = args.hidden_size, args.seq_length
    heads = args.num_attention_heads
    kv_channels = args.kv_channels or h // heads
    query_groups = args.num_query_groups if args.group_query_attention else heads
    ffn = args.ffn_hidden_size or 4 * h
    gated = 3 if args.swiglu else 2  # GEMMs of width ffn in one MLP
    vocab = args.padded_vocab_size
    if vocab is None:
        raise ValueError("the FLOPs count needs args.padded_vocab_size (set when the tokenizer is built)")

    dense_layers, moe_layers, topk, last_is_moe = _moe_layer_counts(args)
    mtp = args.mtp_num_layers or 0
    # Megatron counts each multi-token-prediction layer like the last decoder layer.
    dense_layers += (1 - last_is_moe) * mtp
    moe_layers += last_is_moe * mtp
    layers = args.num_layers + mtp
    moe_ffn = args.moe_ffn_hidden_size or ffn
    shared_ffn = args.moe_shared_expert_intermediate_size or 0

    fwd_bwd_fma = 3 * 2
    q_size = kv_channels * heads
    kv_size = kv_channels * query_groups
    attention = fwd_bwd_fma * (
        h * (q_size + 2 * kv_size)  # QKV projection
        + q_size * s / 2 * 2  # QK^T and (QK^T)V over half the causal square
        + q_size * h  # output projection
    )
    mlp = fwd_bwd_fma * h * (
        ffn * gated * dense_layers + (moe_ffn * topk * gated + shared_ffn * gated) * moe_layers
    )
    mtp_extra = fwd_bwd_fma * mtp * (3 * h + 2 * h * h)  # MTP norms and projection
    logits = fwd_bwd_fma * h * vocab * (mtp + 1)
    return batch_size * s * (mlp + attention * layers + mtp_extra + logits)


# ---------------------------------------------------------------------------------------------
# PaLM-convention MFU.
# ---------------------------------------------------------------------------------------------


def palm_flops_per_token(
    model_params_excl_input_embedding: int, num_layers: int, hidden_size: int, seq_length: int
) -> float:
    """6*N (matmuls, forward + backward) + 12*L*h*s (attention scores, full square, not halved)."""
    return 6.0 * model_params_excl_input_embedding + 12.0 * num_layers * hidden_size * seq_length


def _innermost(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / Float16Module-style wrappers (they keep it in ``.module``)."""
    while isinstance(getattr(module, "module", None), torch.nn.Module):
        module = module.module
    return module


_INPUT_EMBEDDING_SUFFIXES = ("word_embeddings.weight", "position_embeddings.weight")


def count_params_for_mfu(model, tensor_parallel_rank: int = 0) -> int:
    """This rank's share of N: trainable parameters except input embedding tables.

    - ``model`` is a module or a list of model chunks (virtual pipeline), wrapped or not.
    - Input embedding tables are Megatron's ``word_embeddings`` / ``position_embeddings`` and any
      ``torch.nn.Embedding`` (both are lookups: no matmul FLOPs).
    - Tied embeddings count once, as the output layer: on the stage that computes the logits
      (Megatron: ``share_embeddings_and_output_weights`` and ``post_process`` with no
      ``output_layer.weight`` of its own), or wherever a non-embedding module holds the same tensor.
      Under pipeline parallelism the last stage's ``output_layer.weight`` copy is what counts.
    - Parameters not split over tensor parallelism (no ``tensor_model_parallel`` attribute) are
      counted only on ``tensor_parallel_rank`` 0, so ``sum_count_over_group`` over the
      model-parallel group counts every parameter once.
    """
    chunks = model if isinstance(model, (list, tuple)) else [model]
    total = 0
    for chunk in chunks:
        inner = _innermost(chunk)
        names = [name for name, _ in chunk.named_parameters()]
        megatron_tied_here = (
            bool(getattr(inner, "share_embeddings_and_output_weights", False))
            and bool(getattr(inner, "post_process", True))
            and not any(name.endswith("output_layer.weight") for name in names)
        )
        lookup_ids, used_elsewhere = set(), set()
        for module in chunk.modules():
            own = {id(p) for p in module.parameters(recurse=False)}
            # Lookup tables: torch's Embedding and Megatron's VocabParallelEmbedding (not a subclass).
            is_lookup_module = isinstance(module, torch.nn.Embedding) or type(module).__name__.endswith("Embedding")
            (lookup_ids if is_lookup_module else used_elsewhere).update(own)
        for name, param in chunk.named_parameters():
            if not param.requires_grad:
                continue
            is_lookup = name.endswith(_INPUT_EMBEDDING_SUFFIXES) or id(param) in lookup_ids
            is_output_too = id(param) in used_elsewhere or (
                megatron_tied_here and name.endswith("word_embeddings.weight")
            )
            if is_lookup and not is_output_too:
                continue
            if not getattr(param, "tensor_model_parallel", False) and tensor_parallel_rank != 0:
                continue
            total += param.numel()
    return total


def sum_count_over_group(local_count: int, group=None) -> int:
    """Sum a per-rank count over ``group`` (e.g. the model-parallel group); local without dist."""
    if not (dist.is_available() and dist.is_initialized()):
        return int(local_count)
    value = torch.tensor([int(local_count)], dtype=torch.int64, device=device.current_device())
    dist.all_reduce(value, op=dist.ReduceOp.SUM, group=group)
    return int(value.item())


# Dense (no sparsity) peaks per GPU from NVIDIA's datasheets: tensor-core bf16/fp16, and plain
# fp32 (torch keeps TF32 matmuls off unless asked). The first pattern that matches wins, so the
# specific variants come before the family name.
_PEAKS = (
    (r"gh200", 989e12, 989e12, 67e12),
    (r"h200.*nvl", 835e12, 835e12, 60e12),
    (r"h200", 989e12, 989e12, 67e12),
    (r"h100.*nvl", 835e12, 835e12, 60e12),
    (r"h100.*pcie", 756e12, 756e12, 51e12),
    (r"h100", 989e12, 989e12, 67e12),
    (r"b200", 2250e12, 2250e12, 75e12),
    (r"a100", 312e12, 312e12, 19.5e12),
    (r"l40s", 362e12, 362e12, 91.6e12),
    (r"l40\b", 181e12, 181e12, 90.5e12),
    (r"\bl4\b", 121e12, 121e12, 30.3e12),
    (r"\ba10\b", 125e12, 125e12, 31.2e12),
    (r"\ba40\b", 150e12, 150e12, 37.4e12),
    (r"rtx 4090", 165e12, 165e12, 82.6e12),
    (r"v100", None, 125e12, 15.7e12),  # no bf16 tensor cores
)

_DTYPE_COLUMN = {
    torch.bfloat16: 0, "bf16": 0, "bfloat16": 0,
    torch.float16: 1, "fp16": 1, "float16": 1,
    torch.float32: 2, "fp32": 2, "float32": 2,
}


def gpu_peak_flops(device_name: str, dtype: Union[torch.dtype, str]) -> Optional[float]:
    """Dense peak FLOP/s of one GPU for ``dtype``; None for the CPU or an unknown device."""
    if dtype not in _DTYPE_COLUMN:
        raise ValueError(f"peak FLOP/s are known for bf16, fp16 and fp32, not {dtype!r}")
    name = (device_name or "").lower()
    for pattern, *peaks in _PEAKS:
        if re.search(pattern, name):
            return peaks[_DTYPE_COLUMN[dtype]]
    return None


def _dtype_name(dtype) -> str:
    return {0: "bf16", 1: "fp16", 2: "fp32"}[_DTYPE_COLUMN[dtype]]


def mfu_convention_note(device_name: str, dtype, peak_flops: Optional[float]) -> str:
    """The line printed at start-up so MFU figures say how they were computed."""
    if peak_flops is None:
        return (
            f"> MFU not reported: no known dense {_dtype_name(dtype)} peak for device {device_name!r} "
            "(tokens/s and TFLOP/s/GPU are still logged)"
        )
    return (
        "> MFU uses the PaLM convention: 6*N + 12*L*h*s FLOPs per token (N = trainable parameters "
        "except the input embedding, causal attention not halved), divided by the dense "
        f"{_dtype_name(dtype)} peak of {device_name}: {peak_flops / 1e12:.0f} TFLOP/s per GPU"
    )


def model_flops_utilization(
    flops_per_token: float, tokens_per_second_per_gpu: float, peak_flops: Optional[float]
) -> Optional[float]:
    """MFU as a fraction (0.41 = 41%), or None without a known peak."""
    if not peak_flops:
        return None
    return flops_per_token * tokens_per_second_per_gpu / peak_flops


# ---------------------------------------------------------------------------------------------
# ETA and memory.
# ---------------------------------------------------------------------------------------------


def eta_seconds(iteration: int, train_iters: int, seconds_per_iteration: float) -> float:
    return max(train_iters - iteration, 0) * seconds_per_iteration


def format_eta(seconds: Optional[float]) -> str:
    """'HH:MM:SS', with a 'Nd ' prefix past a day; 'unknown' for None or a non-finite time."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    total = max(int(round(seconds)), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


_MB = 1024.0 * 1024.0


def _cpu_rss_mb() -> Tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux; peak only elsewhere)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        current = pages * resource.getpagesize() / _MB
    except OSError:
        current = peak
    return current, peak


def memory_report_line(rank: int, iteration: int) -> str:
    """Megatron's per-rank memory report. On CUDA the allocator's figures; on a CPU run there is
    no device allocator, so the process's resident memory (RSS) is reported instead."""
    head = f"[Rank {rank}] (after {iteration} iterations) memory (MB)"
    if device.on_cuda():
        return (
            f"{head} | allocated: {torch.cuda.memory_allocated() / _MB}"
            f" | max allocated: {torch.cuda.max_memory_allocated() / _MB}"
            f" | reserved: {torch.cuda.memory_reserved() / _MB}"
            f" | max reserved: {torch.cuda.max_memory_reserved() / _MB}"
        )
    current, peak = _cpu_rss_mb()
    return f"{head} | cpu rss: {current:.1f} | max cpu rss: {peak:.1f}"


def device_memory_bytes() -> Optional[Dict[str, int]]:
    """Allocator figures for TensorBoard's mem-* tags; None on CPU (no device allocator)."""
    if not device.on_cuda():
        return None
    stats = torch.cuda.memory_stats()
    return {
        "mem-reserved-bytes": stats.get("reserved_bytes.all.current", 0),
        "mem-allocated-bytes": stats.get("allocated_bytes.all.current", 0),
        "mem-max-allocated-bytes": stats.get("allocated_bytes.all.peak", 0),
        "mem-allocated-count": stats.get("allocation.all.current", 0),
    }


def peak_memory_gib_and_fraction() -> Tuple[Optional[float], Optional[float]]:
    """(max allocated GiB, fraction of the device's memory) for the log line; (None, None) on CPU."""
    if not device.on_cuda():
        return None, None
    peak = torch.cuda.max_memory_allocated()
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return peak / 1024**3, peak / total
