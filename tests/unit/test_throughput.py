"""FLOPs (Megatron's count and the PaLM convention), parameter counting for MFU, peaks, ETA, memory."""
import re

import pytest
import torch
from torch import nn

from megatron.training.throughput import (
    count_params_for_mfu,
    format_eta,
    gpu_peak_flops,
    memory_report_line,
    mfu_convention_note,
    model_flops_utilization,
    num_floating_point_operations,
    palm_flops_per_token,
    sum_count_over_group,
)

from tests.flag_defaults import default_args


def tiny_gpt_args(**kw):
    args = dict(num_layers=2, hidden_size=8, num_attention_heads=2, kv_channels=4, group_query_attention=True,
                num_query_groups=1, ffn_hidden_size=16, swiglu=True, seq_length=4, padded_vocab_size=32,
                num_experts=None)
    args.update(kw)
    return default_args(**args)


def forward_gemm_flops_per_token(h, s, q, kv, ffn, mlp_matrices, vocab, layers):
    """Forward FLOPs of one token, GEMM by GEMM (2 per multiply-add)."""
    per_layer = (
        2 * h * q  # query projection
        + 2 * h * kv * 2  # key and value projections
        + 2 * q * (s / 2)  # scores against half the causal window on average
        + 2 * q * (s / 2)  # scores times values
        + 2 * q * h  # attention output projection
        + mlp_matrices * 2 * h * ffn  # MLP: fc1 (two of them with SwiGLU) and fc2
    )
    return layers * per_layer + 2 * h * vocab  # plus the logits


def test_megatron_flops_tiny_gpt_by_hand():
    args = tiny_gpt_args()
    per_token = forward_gemm_flops_per_token(h=8, s=4, q=8, kv=4, ffn=16, mlp_matrices=3, vocab=32, layers=2)
    assert num_floating_point_operations(args, batch_size=3) == pytest.approx(3 * 3 * 4 * per_token)
    assert 3 * 3 * 4 * per_token == 105984  # the hand sum, written out


def test_megatron_flops_without_gqa_and_swiglu():
    args = tiny_gpt_args(group_query_attention=False, swiglu=False)
    per_token = forward_gemm_flops_per_token(h=8, s=4, q=8, kv=8, ffn=16, mlp_matrices=2, vocab=32, layers=2)
    assert num_floating_point_operations(args, batch_size=1) == pytest.approx(3 * 4 * per_token)


def test_megatron_flops_moe_counts_routed_experts():
    dense = num_floating_point_operations(tiny_gpt_args(), 1)
    moe = num_floating_point_operations(
        tiny_gpt_args(num_experts=4, moe_router_topk=2, moe_layer_freq=1, moe_ffn_hidden_size=16), 1
    )
    # every layer's MLP now runs 2 experts of the same size: one more MLP's worth per layer
    one_mlp = 3 * 2 * 3 * 8 * 16 * 4  # fwd+bwd, FMA, SwiGLU matrices, h, ffn, tokens
    assert moe - dense == pytest.approx(2 * one_mlp)


def test_megatron_flops_needs_padded_vocab():
    with pytest.raises(ValueError, match="padded_vocab_size"):
        num_floating_point_operations(tiny_gpt_args(padded_vocab_size=None), 1)


def test_palm_flops_for_s2_match_benchmarks():
    # S2 llama-1.3b: RMSNorm, SwiGLU, no biases, untied: per layer 4h^2 + 3*h*ffn + 2h, final
    # norm h, output layer V*h; the input embedding is not counted.
    L, h, ffn, V, s = 24, 2048, 5632, 32000, 2048
    n = L * (4 * h * h + 3 * h * ffn + 2 * h) + h + V * h
    assert n == 1_298_761_728
    flops = palm_flops_per_token(n, L, h, s)
    assert flops == 6 * n + 12 * L * h * s
    assert flops == pytest.approx(9.0e9, rel=0.01)  # BENCHMARKS.md: "S2 has flops_per_token ~ 9.0e9"


class Embedding(nn.Module):
    """Megatron's layout: embedding.word_embeddings / embedding.position_embeddings."""

    def __init__(self, vocab, h, seq):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, h)
        self.position_embeddings = nn.Embedding(seq, h)


class TinyGPT(nn.Module):
    def __init__(self, tied=False, post_process=True):
        super().__init__()
        self.share_embeddings_and_output_weights = tied
        self.post_process = post_process
        self.embedding = Embedding(10, 4, 6)
        self.layer = nn.Linear(4, 4)  # 20
        self.norm = nn.LayerNorm(4)  # 8
        if post_process and not tied:
            self.output_layer = nn.Linear(4, 10, bias=False)  # 40


class Wrapper(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_count_params_excludes_input_embeddings():
    assert count_params_for_mfu(TinyGPT()) == 20 + 8 + 40
    assert count_params_for_mfu(Wrapper(Wrapper(TinyGPT()))) == 68
    assert count_params_for_mfu([TinyGPT(), TinyGPT(post_process=False)]) == 68 + 28


def test_tied_embedding_counts_once_as_output_layer():
    assert count_params_for_mfu(TinyGPT(tied=True)) == 20 + 8 + 40
    assert count_params_for_mfu(Wrapper(TinyGPT(tied=True))) == 68
    # first pipeline stage of a tied model: its embedding copy is only a lookup
    assert count_params_for_mfu(TinyGPT(tied=True, post_process=False)) == 28

    class HFStyleTied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 4)
            self.lm_head = nn.Linear(4, 10, bias=False)
            self.lm_head.weight = self.embed_tokens.weight

    assert count_params_for_mfu(HFStyleTied()) == 40


def test_frozen_and_tensor_parallel_rules():
    model = TinyGPT()
    model.norm.weight.requires_grad_(False)
    assert count_params_for_mfu(model) == 68 - 4
    model.layer.weight.tensor_model_parallel = True  # split over TP: every rank holds a part
    model.output_layer.weight.tensor_model_parallel = True
    assert count_params_for_mfu(model, tensor_parallel_rank=1) == 16 + 40
    assert sum_count_over_group(56) == 56  # no process group: the local count


def test_peak_flops_table():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989e12
    assert gpu_peak_flops("NVIDIA H200", "bf16") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe", torch.float16) == 756e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB", torch.float32) == 19.5e12
    assert gpu_peak_flops("NVIDIA L40S", "bf16") == 362e12
    assert gpu_peak_flops("NVIDIA L4", "bf16") == 121e12
    assert gpu_peak_flops("NVIDIA A10", "bf16") == 125e12
    assert gpu_peak_flops("Tesla V100-SXM2-32GB", torch.bfloat16) is None
    assert gpu_peak_flops("cpu", torch.bfloat16) is None
    assert gpu_peak_flops("NVIDIA A10G", "bf16") is None  # no published dense figure: unknown
    with pytest.raises(ValueError, match="bf16, fp16 and fp32"):
        gpu_peak_flops("NVIDIA H100", torch.int8)


def test_mfu_and_its_note():
    assert model_flops_utilization(9.0e9, 50_000, 989e12) == pytest.approx(0.455, abs=1e-3)
    assert model_flops_utilization(9.0e9, 50_000, None) is None
    note = mfu_convention_note("NVIDIA H100 80GB HBM3", torch.bfloat16, 989e12)
    assert "PaLM convention" in note and "6*N + 12*L*h*s" in note and "bf16 peak" in note and "989 TFLOP/s" in note
    assert "not reported" in mfu_convention_note("cpu", torch.float32, None)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "00:00:00"), (59.6, "00:01:00"), (3661, "01:01:01"), (90061, "1d 01:01:01"), (None, "unknown"),
     (float("inf"), "unknown")],
)
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


def test_memory_report_line_on_cpu():
    line = memory_report_line(3, 10)
    assert re.fullmatch(r"\[Rank 3\] \(after 10 iterations\) memory \(MB\) \| cpu rss: \d+\.\d \| max cpu rss: \d+\.\d", line)
