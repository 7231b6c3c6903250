"""Activation recompute: every mode gives the losses and gradients of no recompute, and re-runs
exactly the forward passes it names.

Core-level (GPTModel + DDP + optimizer + the schedule) at TP=2 with dropout on, so the recomputed
dropout masks must equal the original ones (the RNG states are replayed). Forward calls are counted
with forward hooks on the real modules; the inputs kept for recompute are read from the
checkpoint nodes of the autograd graph.
"""
import torch

from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed, set_param_init_seed
from megatron.core.transformer.transformer_config import TransformerConfig
from tests.harness import run_distributed

TP, VOCAB, SEQ, HIDDEN, GBS, MBS, STEPS, LAYERS = 2, 64, 16, 32, 4, 2, 3, 2
MICRO = GBS // MBS
FULL_HIDDEN_NUMEL = SEQ * MBS * HIDDEN  # one micro-batch's hidden states, unsplit

# name -> (sequence parallel, recompute config)
MODES = {
    "none": (True, {}),
    "selective core_attn": (True, dict(recompute_granularity="selective", recompute_modules=["core_attn"])),
    "selective mlp": (True, dict(recompute_granularity="selective", recompute_modules=["mlp"])),
    "selective layernorm": (True, dict(recompute_granularity="selective", recompute_modules=["layernorm"])),
    "full uniform 1": (True, dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)),
    "full uniform 2": (True, dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=2)),
    "full block 1": (True, dict(recompute_granularity="full", recompute_method="block", recompute_num_layers=1)),
    "none, no SP": (False, {}),
    "distributed full uniform 1, no SP": (False, dict(recompute_granularity="full", recompute_method="uniform",
                                                      recompute_num_layers=1, distribute_saved_activations=True)),
}
MODULES = ("layer", "core_attention", "mlp", "input_layernorm", "pre_mlp_layernorm")


def _batches():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, VOCAB, (GBS, SEQ + 1), generator=g) for _ in range(STEPS)]


def _count_forwards(model, counts):
    """counts[(module kind, layer index)] += 1 on every real forward call of that module."""
    def hook(key):
        def bump(module, inputs, output):
            counts[key] = counts.get(key, 0) + 1
        return bump
    for i, layer in enumerate(model.decoder.layers):
        for kind, module in (("layer", layer), ("core_attention", layer.self_attention.core_attention),
                             ("mlp", layer.mlp), ("input_layernorm", layer.input_layernorm),
                             ("pre_mlp_layernorm", layer.pre_mlp_layernorm)):
            module.register_forward_hook(hook((kind, i)))


def _checkpoint_inputs(output):
    """For each checkpoint node of the graph behind ``output``: its saved tensors' (numel, ndim)."""
    found, seen, stack = [], set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "CheckpointFunctionBackward":
            found.append([(t.numel(), t.dim()) for t in node.saved_tensors])
        stack.extend(n for n, _ in node.next_functions)
    return found


def _run(sp: bool, recompute: dict):
    ps.initialize_model_parallel(TP, 1)
    model_parallel_cuda_manual_seed(1234)
    set_param_init_seed(1234)
    config = TransformerConfig(num_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=4,
                               hidden_dropout=0.1, attention_dropout=0.1, tensor_model_parallel_size=TP,
                               sequence_parallel=sp, **recompute)
    model = GPTModel(config, get_gpt_layer_local_spec(), vocab_size=VOCAB, max_sequence_length=SEQ)
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model)
    optimizer = get_megatron_optimizer(OptimizerConfig(lr=1e-2, adam_eps=1e-4), [ddp])
    config.finalize_model_grads_func = finalize_model_grads
    counts = {}
    _count_forwards(model, counts)
    losses, grads, counts_per_step, saved = [], None, [], None
    for step, batch in enumerate(_batches()):
        micro = iter(batch.split(MBS))
        counts.clear()

        def forward_step(data_iterator, model):
            tokens = next(data_iterator)
            out = model(tokens[:, :-1], None, None, labels=tokens[:, 1:])
            nonlocal saved
            if saved is None:
                saved = _checkpoint_inputs(out)

            def loss_func(output):
                loss = output.float().mean()
                return loss, {"lm loss": loss.detach()}
            return out, loss_func

        ddp.zero_grad_buffer()
        optimizer.zero_grad()
        out = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=micro, model=[ddp],
                                          num_microbatches=MICRO, seq_length=SEQ, micro_batch_size=MBS)
        losses.append(float(sum(d["lm loss"] for d in out) / MICRO))
        counts_per_step.append(dict(counts))
        if step == 0:
            grads = {name: p.main_grad.detach().clone() for name, p in model.named_parameters()}
        ok, _, _ = optimizer.step()
        assert ok
    ps.destroy_model_parallel()
    return losses, grads, counts_per_step, saved


def _all_modes(rank, world_size):
    return {name: _run(sp, recompute) for name, (sp, recompute) in MODES.items()}


def _rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def _expected_counts(name):
    """Forward calls per step of each (module kind, layer): once per micro-batch, twice if recomputed."""
    recomputed = set()
    if name.startswith("selective "):
        kind = name.split()[1]
        kinds = ("input_layernorm", "pre_mlp_layernorm") if kind == "layernorm" else \
            ("core_attention",) if kind == "core_attn" else (kind,)
        recomputed = {(k, i) for k in kinds for i in range(LAYERS)}
    elif "uniform" in name:
        recomputed = {(k, i) for k in MODULES for i in range(LAYERS)}
    elif "block 1" in name:
        recomputed = {(k, 0) for k in MODULES}
    return {(k, i): MICRO * (2 if (k, i) in recomputed else 1) for k in MODULES for i in range(LAYERS)}


def test_recompute_modes_match_no_recompute_and_rerun_what_they_name():
    results = run_distributed(_all_modes, TP)
    for rank, got in enumerate(results):
        for name, (losses, grads, counts, saved) in got.items():
            ref_losses, ref_grads, _, _ = got["none, no SP" if "no SP" in name else "none"]
            assert _rel(losses, ref_losses) <= 1e-6, (rank, name, losses, ref_losses)
            for pname in ref_grads:
                assert _rel(grads[pname], ref_grads[pname]) <= 1e-6, (rank, name, pname)
            expected = _expected_counts(name)
            for step_counts in counts:
                assert step_counts == expected, (rank, name, step_counts, expected)
            if name.startswith("full") or name.startswith("distributed"):
                # One checkpoint node per recomputed chunk, each keeping the chunk's hidden-state input.
                chunks = {"full uniform 1": 2, "full uniform 2": 1, "full block 1": 1}.get(name, 2)
                assert len(saved) == chunks, (rank, name, saved)
                per_rank = FULL_HIDDEN_NUMEL // TP  # split by sequence parallelism or by the flag
                for node in saved:
                    assert node[0][0] == per_rank, (rank, name, node)
                if name.startswith("distributed"):
                    assert all(node[0][1] == 1 for node in saved), "the kept slice is the flattened 1/TP"
        # Dropout is really on: the recompute-free runs with and without SP differ in their masks.
        assert got["none"][0] != got["none, no SP"][0]
        assert min(got["none"][0]) > 0
