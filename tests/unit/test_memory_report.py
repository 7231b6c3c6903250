"""The memory breakdown's numbers for a tiny bf16 model with fp32 main grads and fp32 master copies."""
from types import SimpleNamespace

import torch

from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.training.memory_report import memory_bytes, memory_report_lines
from tests.harness import run_distributed

ARGS = SimpleNamespace(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1,
                       recompute_modules=None, use_distributed_optimizer=False)


def _one_step(rank, world_size):
    ps.initialize_model_parallel(1, 1)
    model_parallel_cuda_manual_seed(1)
    config = TransformerConfig(num_layers=1, hidden_size=16, num_attention_heads=2, bf16=True,
                               params_dtype=torch.bfloat16, hidden_dropout=0.0, attention_dropout=0.0)
    model = GPTModel(config, get_gpt_layer_local_spec(), vocab_size=32, max_sequence_length=8)
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model)
    optimizer = get_megatron_optimizer(OptimizerConfig(lr=1e-3, bf16=True, params_dtype=torch.bfloat16), [ddp])
    before = memory_bytes([ddp], optimizer)
    tokens = torch.randint(0, 32, (2, 9))
    ddp(tokens[:, :-1], None, None, labels=tokens[:, 1:]).float().mean().backward()
    optimizer.step()
    numels = [p.numel() for p in model.parameters()]
    return {"before": before, "after": memory_bytes([ddp], optimizer), "numels": numels,
            "dtypes": {p.dtype for p in model.parameters()}, "lines": memory_report_lines([ddp], optimizer, ARGS)}


def test_memory_bytes_are_exact_for_a_tiny_model():
    got = run_distributed(_one_step, 1)[0]
    n, count = sum(got["numels"]), len(got["numels"])
    assert got["dtypes"] == {torch.bfloat16}
    for when in ("before", "after"):
        assert got[when]["parameters"] == 2 * n  # bf16
        assert got[when]["gradients"] == 4 * n  # one fp32 main-grad buffer (plain DDP pads nothing)
    # Before the first step: only the fp32 master copies; after: plus Adam's two fp32 moments and
    # one scalar step count (a float32 tensor in torch's AdamW) per parameter.
    assert got["before"]["optimizer state"] == 4 * n
    assert got["after"]["optimizer state"] == 4 * n + 2 * 4 * n + 4 * count
    (line,) = got["lines"]
    assert line.startswith("[Rank 0] (after the first iteration) memory breakdown (MB) | parameters: ")
    on_cpu = "peak activations: not measured on CPU" in line
    assert on_cpu == (not torch.cuda.is_available()), line
    assert "recompute: full uniform 1, distributed optimizer: off" in line
