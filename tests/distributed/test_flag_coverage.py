"""Every flag declared `implemented` in Megatron's network size, regularization, training,
initialization, learning rate, checkpointing, mixed precision, logging, validation and data groups is
used in a short real run of pretrain() (tiny model, CPU, gloo) and, where it is cheap to see, shown to
have had its effect. This file: the model's shape and initialization, activation recompute, the
optimizer and the learning-rate schedule; and the check that no flag is declared implemented
without a test. test_flag_coverage_io.py covers data, validation and checkpointing;
test_flag_coverage_loop.py mixed precision, the loop's switches, logging and multi-rank flags.

Each test spawns its ranks once and runs many short trainings in them (tests/pretrain_runner.py
tears the global state down between runs).
"""
import glob
import math
import os
import re

import numpy as np
import pytest
import torch

from tests.distributed.flag_runs import (  # noqa: F401  (corpus: a pytest fixture)
    base_argv, close, corpus, differs, inner_model, iteration_fields, near, run_flags, with_flags)
from tests.harness import run_distributed


# ------------------------------------------------------------------------------------------------
# Network size, initialization, activation recompute: the model changes (or, for recompute and
# deterministic mode, provably does not) and still trains.

FAR_POSITION = 8191  # past Llama 3.1's original context (8192), where its RoPE scaling acts


def _param_snapshot(store):
    """A finalize hook that keeps, at iteration 1 (before the first update), every parameter's shape,
    mean and std, plus a few global facts."""
    def hook(model_chunks, iteration):
        if iteration == 1:
            for name, p in inner_model(model_chunks).named_parameters():
                values = p.detach().double()
                store[name] = (tuple(p.shape), float(values.mean()), float(values.std()) if p.numel() > 1 else 0.0)
            probe = torch.linspace(-3, 3, 13)
            store["__activation__"] = inner_model(model_chunks).decoder.layers[0].mlp.activation_func(probe).tolist()
            rotary = getattr(inner_model(model_chunks), "rotary_pos_emb", None)
            if rotary is not None:
                store["__inv_freq__"] = rotary.inv_freq.tolist()
                store["__angles__"] = rotary(16).reshape(16, -1).tolist()
                store["__far_angles__"] = rotary(FAR_POSITION + 1)[FAR_POSITION].flatten().tolist()
    return hook


def _forward_call_counter(counts, facts):
    """Counts forward calls of layer 0's parts during iteration 2 (registered at the end of 1)."""
    handles = []

    def hook(model_chunks, iteration):
        facts["deterministic"] = torch.are_deterministic_algorithms_enabled()
        layer = inner_model(model_chunks).decoder.layers[0]
        parts = {"layer": layer, "core_attn": layer.self_attention.core_attention, "mlp": layer.mlp,
                 "layernorm": layer.input_layernorm}
        if iteration == 1:
            for name, module in parts.items():
                counts[name] = 0
                handles.append(module.register_forward_hook(
                    lambda *unused, name=name: counts.__setitem__(name, counts[name] + 1)))
        elif iteration == 2:
            for handle in handles:
                handle.remove()
            handles.clear()
    return hook


# RoPE acts through the attention scores; at --init-method-std 0.02 q.k is ~0.01 and attention is
# nearly uniform, so RoPE variants moved the loss by only 1e-5 relative. At 0.2 the scores are O(1)
# and each variant below moves it by >= 8e-3 (800 x DIFFERS); the model still trains.
ROPE = ["--position-embedding-type", "rope", "--init-method-std", "0.2"]
MODEL_VARIANTS = {
    "base": [],
    "layernorm_1p": ["--apply-layernorm-1p"],
    "openai_gelu": ["--openai-gelu"],
    "squared_relu": ["--squared-relu"],
    "qk_layernorm": ["--qk-layernorm"],
    "post_ln_residual": ["--apply-residual-connection-post-layernorm"],
    "xavier": ["--init-method-xavier-uniform"],
    "init_std": ["--init-method-std", "0.05"],
    "norm_eps": ["--norm-epsilon", "0.5"],
    "qkv_bias_only": ["--disable-bias-linear", "--add-qkv-bias"],
    "shapes": ["--kv-channels", "16", "--ffn-hidden-size", "48", "--max-position-embeddings", "24",
               "--make-vocab-size-divisible-by", "64", "--softmax-type", "vanilla"],
    "seed": ["--seed", "4321"],
    "no_positions": ["--position-embedding-type", "none"],
    "llama": ["--normalization", "RMSNorm", "--swiglu", "--group-query-attention", "--num-query-groups", "2",
              "--untie-embeddings-and-output-weights", "--disable-bias-linear"],
    "rope": ROPE + ["--rope-type", "rope"],
    "rope_base": ROPE + ["--rotary-base", "100"],
    "rope_percent": ROPE + ["--rotary-percent", "0.5"],
    "rope_interleaved": ROPE + ["--rotary-interleaved"],
    "rope_scaling": ROPE + ["--use-rope-scaling"],
    "rope_scaling_2": ROPE + ["--use-rope-scaling", "--rope-scaling-factor", "2"],
    "rope_interpolation": ROPE + ["--rotary-seq-len-interpolation-factor", "2"],
}
RECOMPUTE_VARIANTS = {
    "plain": [],
    "full_uniform": ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"],
    "full_block": ["--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1"],
    "activations": ["--recompute-activations"],
    "selective_all": ["--recompute-granularity", "selective", "--recompute-modules", "core_attn", "layernorm", "mlp"],
    "deterministic": ["--deterministic-mode"],
}


def _model_runs(rank, world_size, corpus):
    base = base_argv(corpus)
    out = {}
    for name, flags in MODEL_VARIANTS.items():
        params = {}
        record = run_flags(base + flags, _param_snapshot(params))
        out[name] = {"loss": record["loss"], "grad_norm": record["grad_norm"], "params": params,
                     "stdout": record["stdout"]}
    for name, flags in RECOMPUTE_VARIANTS.items():
        counts, facts = {}, {}
        record = run_flags(base + flags, _forward_call_counter(counts, facts))
        out["recompute_" + name] = {"loss": record["loss"], "grad_norm": record["grad_norm"], "calls": counts,
                                    "deterministic": facts["deterministic"]}
    out["deterministic_after_the_runs"] = torch.are_deterministic_algorithms_enabled()
    return out


def _llama31_inv_freq(inv_freq, factor, low=1.0, high=4.0, original=8192):
    """Llama 3.1's RoPE frequency scaling, written out for the check."""
    out = []
    for f in inv_freq:
        wavelength = 2 * math.pi / f
        if wavelength < original / high:
            out.append(f)
        elif wavelength > original / low:
            out.append(f / factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return out


def _norm_weights(params):
    return {k: v for k, v in params.items() if k.endswith("layernorm.weight") or k.endswith("final_layernorm.weight")}


def test_network_size_and_initialization_flags_change_the_model(corpus):
    runs = run_distributed(_model_runs, 1, corpus)[0]
    deterministic_after_the_runs = runs.pop("deterministic_after_the_runs")
    base = runs["base"]
    for name, run in runs.items():
        assert all(math.isfinite(x) for x in run["loss"]), (name, run["loss"])
        assert run["loss"][-1] < run["loss"][0], f"{name} does not train: {run['loss']}"

    # Zero-centred gamma: norm weights start at 0, yet the first forward equals the plain model's.
    norms = _norm_weights(runs["layernorm_1p"]["params"])
    assert norms and all(mean == 0.0 and std == 0.0 for _, mean, std in norms.values())
    assert all(mean == 1.0 for _, mean, _ in _norm_weights(base["params"]).values())
    assert near(runs["layernorm_1p"]["loss"][0], base["loss"][0])

    # With std-0.02 weights the MLP inputs are so small that tanh-GeLU and GeLU agree to float
    # precision: look at the activation the built model applies instead. On this probe the two
    # GeLUs are 4.4e-4 apart, 150 x the 3e-6 that near(..., 1e-6) allows, so each check below tells
    # them apart.
    probe = torch.linspace(-3, 3, 13)
    activation = lambda name: runs[name]["params"]["__activation__"]  # noqa: E731
    assert near(activation("base"), torch.nn.functional.gelu(probe).tolist(), 1e-6)
    assert near(activation("openai_gelu"), torch.nn.functional.gelu(probe, approximate="tanh").tolist(), 1e-6)
    assert near(activation("squared_relu"), (torch.relu(probe) ** 2).tolist(), 1e-6)
    assert near(activation("llama"), torch.nn.functional.silu(probe).tolist(), 1e-6)
    for name in ("squared_relu", "qk_layernorm", "post_ln_residual", "xavier", "init_std",
                 "norm_eps", "qkv_bias_only", "seed", "no_positions", "llama", "shapes"):
        assert differs(runs[name]["loss"], base["loss"]), f"{name} left the losses unchanged"

    qk = runs["qk_layernorm"]["params"]
    assert "decoder.layers.0.self_attention.q_layernorm.weight" in qk
    assert "decoder.layers.0.self_attention.k_layernorm.weight" in qk
    assert not any("q_layernorm" in k for k in base["params"])

    bias_names = [k for k in runs["qkv_bias_only"]["params"] if k.endswith(".bias") and "layernorm" not in k]
    assert bias_names and all("linear_qkv" in k for k in bias_names), bias_names

    weight_std = lambda run, k: run["params"][k][2]  # noqa: E731
    fc1 = "decoder.layers.0.mlp.linear_fc1.weight"
    assert abs(weight_std(base, fc1) - 0.02) < 0.002
    assert abs(weight_std(runs["init_std"], fc1) - 0.05) < 0.005
    # Xavier uniform on [128, 32]: std = sqrt(2 / (fan_in + fan_out)) = 0.1118
    assert abs(weight_std(runs["xavier"], fc1) - math.sqrt(2 / (32 + 128))) < 0.01

    shapes = runs["shapes"]["params"]
    assert shapes["decoder.layers.0.self_attention.linear_qkv.weight"][0] == (3 * 4 * 16, 32)  # kv-channels 16
    assert shapes[fc1][0] == (48, 32)
    assert shapes["embedding.position_embeddings.weight"][0] == (24, 32)
    assert shapes["embedding.word_embeddings.weight"][0] == (512, 32)  # 501 ids padded to a multiple of 64
    assert base["params"]["embedding.word_embeddings.weight"][0] == (504, 32)  # ... and of 8
    assert "embedding.position_embeddings.weight" in base["params"]
    assert not any("position_embeddings" in k for k in runs["no_positions"]["params"])
    assert not any("position_embeddings" in k for k in runs["rope"]["params"])

    llama = runs["llama"]["params"]
    assert "output_layer.weight" in llama and "output_layer.weight" not in base["params"]
    assert "decoder.layers.0.input_layernorm.bias" not in llama  # RMSNorm
    assert llama["decoder.layers.0.self_attention.linear_qkv.weight"][0][0] == 32 + 2 * 2 * 8  # 2 KV groups
    assert llama[fc1][0][0] == 2 * 64  # SwiGLU: [gate; up] of 2/3 x 4h rounded to 64

    for name in ("rope_base", "rope_percent", "rope_interleaved", "rope_interpolation"):
        assert differs(runs[name]["loss"], runs["rope"]["loss"]), f"{name} left the RoPE model unchanged"
    rope = lambda name, key: np.array(runs[name]["params"][key])  # noqa: E731
    head = 8
    # Frequencies and angles are float32 results of a few operations (relative error ~3e-7): 1e-5
    # relative, element by element, is far above that and far below any real change.
    assert close(rope("rope", "__inv_freq__"), [10000 ** (-i / head) for i in range(0, head, 2)], 1e-5)
    assert close(rope("rope_base", "__inv_freq__"), [100 ** (-i / head) for i in range(0, head, 2)], 1e-5)
    assert close(rope("rope_percent", "__inv_freq__"), [10000 ** (-i / 4) for i in range(0, 4, 2)], 1e-5)
    # --use-rope-scaling (Llama 3.1) keeps the frequencies whose wavelength is under 8192 / 4 = 2048
    # positions, slows those over 8192 by the factor and blends in between. With 8 channels a head and
    # base 10000 the wavelengths are 6.3, 63, 628 and 6283: only the slowest is touched (x 0.214 at
    # factor 8, x 0.551 at factor 2). Over the 16 positions trained here it turns by at most 0.015 rad and
    # the loss moved by 5e-7, under any threshold safely above float noise (at --seq-length 4096 it
    # still moves by only 3e-4: attention at init is nearly uniform). So the check is on the rotation
    # the model's RoPE module produces where the scaling acts, at position 8191: the slowest pair turns
    # by 8.19 rad unscaled, 1.75 scaled by 8, 4.51 by 2. A scaling that went missing, or ignored
    # --rope-scaling-factor, is off by >= 0.6 relative there: 6e4 x the 1e-5 tolerance.
    unscaled = np.array([10000 ** (-i / head) for i in range(0, head, 2)])
    for name, factor in (("rope_scaling", 8.0), ("rope_scaling_2", 2.0)):
        scaled = np.array(_llama31_inv_freq(unscaled, factor))
        assert close(rope(name, "__inv_freq__"), scaled, 1e-5), (name, rope(name, "__inv_freq__"), scaled)
        assert close(rope(name, "__far_angles__"), FAR_POSITION * np.tile(scaled, 2), 1e-5), name
    assert close(rope("rope", "__far_angles__"), FAR_POSITION * np.tile(unscaled, 2), 1e-5)
    # Position interpolation by 2: position p gets the angles of p / 2.
    angles, halved = rope("rope", "__angles__"), rope("rope_interpolation", "__angles__")
    assert close(halved * 2, angles, 1e-5)
    # Interleaved layout repeats each frequency in adjacent channels instead of in two halves.
    interleaved = rope("rope_interleaved", "__angles__")
    assert close(interleaved[:, 0::2], angles[:, :head // 2], 1e-6)

    # Recompute and deterministic mode compute the same numbers; recompute runs parts twice.
    plain = runs["recompute_plain"]
    assert plain["calls"] == {"layer": 2, "core_attn": 2, "mlp": 2, "layernorm": 2}
    expected_calls = {
        "full_uniform": {"layer": 4, "core_attn": 4, "mlp": 4, "layernorm": 4},
        "full_block": {"layer": 4, "core_attn": 4, "mlp": 4, "layernorm": 4},
        "activations": {"layer": 2, "core_attn": 4, "mlp": 2, "layernorm": 2},
        "selective_all": {"layer": 2, "core_attn": 4, "mlp": 4, "layernorm": 4},
        "deterministic": {"layer": 2, "core_attn": 2, "mlp": 2, "layernorm": 2},
    }
    for name, calls in expected_calls.items():
        run = runs["recompute_" + name]
        assert run["calls"] == calls, (name, run["calls"])
        assert near(run["loss"], plain["loss"], 1e-6), (name, run["loss"], plain["loss"])
        assert near(run["grad_norm"], plain["grad_norm"], 1e-6), name
    assert runs["recompute_deterministic"]["deterministic"] and not plain["deterministic"]
    assert deterministic_after_the_runs is False  # the run gives torch's setting back




# ------------------------------------------------------------------------------------------------
# Regularization, optimizer and learning-rate schedule: the optimizer's groups carry the values the
# flags ask for, step by step.



SCHEDULE_VARIANTS = {
    "adam": [],
    # Over 3 steps Adam hardly feels its betas, and eps only once it nears the gradients' scale:
    # eps 1e-3 moves the loss by 2e-2 (1e-6 did by 1e-4).
    "adam_values": ["--weight-decay", "0.1", "--adam-beta1", "0.8", "--adam-beta2", "0.95", "--adam-eps", "1e-3"],
    # SGD at --lr 5e-3 barely moves this model (momentum 0.5 vs 0.9: 4e-4); at 0.5 it trains, the
    # momentum moves the loss by 4e-3 and clipping (grad norm 2.8 > --clip-grad 1.0) by 5e-2. Clipping
    # is tested under SGD: Adam is nearly blind to a gradient's scale (no clip moved Adam by 7e-4).
    "sgd": ["--optimizer", "sgd", "--sgd-momentum", "0.5", "--lr", "0.5"],
    "sgd_default_momentum": ["--optimizer", "sgd", "--lr", "0.5"],
    "no_clip": ["--optimizer", "sgd", "--sgd-momentum", "0.5", "--lr", "0.5", "--clip-grad", "0"],
    "wd_linear": ["--weight-decay-incr-style", "linear", "--start-weight-decay", "0", "--end-weight-decay", "0.3"],
    "wd_cosine": ["--weight-decay-incr-style", "cosine", "--start-weight-decay", "0", "--end-weight-decay", "0.3"],
    # 6 iterations of 4 samples: warmup 1 iteration from 1e-4, decay over 5 with WSD's linear anneal
    # over the last 2, down to 1e-4.
    "wsd": ["--train-iters", "6", "--lr-decay-style", "WSD", "--lr-wsd-decay-style", "linear",
            "--lr-wsd-decay-iters", "2", "--lr-warmup-iters", "1", "--lr-warmup-init", "1e-4", "--min-lr", "1e-4",
            "--lr-decay-iters", "5"],
    "cosine": ["--train-iters", "6", "--lr-decay-style", "cosine", "--lr-warmup-fraction", "0.25",
               "--lr-decay-iters", "4"],
    "inverse_sqrt": ["--train-iters", "4", "--lr-decay-style", "inverse-square-root", "--lr-warmup-iters", "1"],
    "constant": ["--lr-decay-style", "constant"],
    # 20 samples = 5 iterations; WSD with the default exponential anneal over the last 8 samples.
    "samples": ["--train-iters", None, "--train-samples", "20", "--lr-decay-samples", "16", "--lr-warmup-samples", "4",
                "--lr-decay-style", "WSD", "--lr-wsd-decay-samples", "8"],
    # Global batch 2, 2, 4, 6, 6, ...: START 2, INCREMENT 2 every 4 samples, up to --global-batch-size 6.
    "rampup": ["--train-iters", None, "--train-samples", "30", "--global-batch-size", "6",
               "--rampup-batch-size", "2", "2", "8"],
    "decoupled": ["--decoupled-lr", "1e-2", "--decoupled-min-lr", "1e-3"],
}


def _argv_with(base, flags):
    """base + flags, where a flag followed by None removes that flag from base."""
    values, extra, i = {}, [], 0
    while i < len(flags):
        if i + 1 < len(flags) and flags[i + 1] is None:
            values[flags[i][2:].replace("-", "_")] = None
            i += 2
        else:
            extra.append(flags[i])
            i += 1
    return with_flags(base, **values) + extra


def _schedule_runs(rank, world_size, corpus):
    base = base_argv(corpus)
    out = {}
    for name, flags in SCHEDULE_VARIANTS.items():
        record = run_flags(_argv_with(base, flags))
        out[name] = {key: record[key] for key in ("loss", "groups", "optimizer", "steps", "stdout")}
    return out


def _lrs(run, decoupled=False):
    return [next(g["lr"] for g in groups if g["decoupled"] == decoupled) for groups in run["groups"]]


def test_optimizer_regularization_and_learning_rate_flags(corpus):
    runs = run_distributed(_schedule_runs, 1, corpus)[0]
    adam, values = runs["adam"], runs["adam_values"]
    assert adam["optimizer"] == "AdamW" and runs["sgd"]["optimizer"] == "SGD"
    first = values["groups"][0]
    assert all(g["betas"] == (0.8, 0.95) and g["eps"] == 1e-3 for g in first)
    assert sorted(g["wd"] for g in first) == [0.0, 0.1]  # biases and norms take no weight decay
    assert sorted(g["wd"] for g in adam["groups"][0]) == [0.0, 0.01]
    assert all(g["momentum"] == 0.5 for g in runs["sgd"]["groups"][0])
    assert all(g["momentum"] == 0.9 for g in runs["sgd_default_momentum"]["groups"][0])
    for name, reference in (("adam_values", "adam"), ("sgd", "adam"), ("no_clip", "sgd"),
                            ("sgd_default_momentum", "sgd")):
        assert differs(runs[name]["loss"], runs[reference]["loss"]), (name, reference)
    # The weight-decay schedule moves the loss by only 2e-5 in 3 steps (lr 5e-3 x wd <= 0.2 shrinks a
    # weight by <= 1e-3 a step): it is checked on the optimizer's groups, which torch's AdamW steps with.

    # Learning rates and weight decays are Python floats from the schedule's formulas: they match the
    # expected values to ~1e-16, so 1e-9 relative (1e-12 absolute around zero) is strict and safe.
    def exact_schedule(got, expected):
        return close(got, expected, 1e-9, atol=1e-12)

    def decayed_wd(run):
        return [max(g["wd"] for g in groups) for groups in run["groups"]]
    assert exact_schedule(decayed_wd(runs["wd_linear"]), [0.0, 0.1, 0.2])
    assert exact_schedule(decayed_wd(runs["wd_cosine"]), [0.0, 0.075, 0.225])
    assert all(min(g["wd"] for g in groups) == 0.0 for groups in runs["wd_linear"]["groups"])

    lr = 5e-3
    assert exact_schedule(_lrs(runs["wsd"]), [1e-4, lr, lr, lr, 1e-4 + 0.5 * (lr - 1e-4), 1e-4])
    assert exact_schedule(_lrs(runs["cosine"]), [0.0, lr, 0.75 * lr, 0.25 * lr, 0.0, 0.0])
    assert exact_schedule(_lrs(runs["inverse_sqrt"]), [0.0, lr, lr * math.sqrt(4 / 8), lr * math.sqrt(4 / 12)])
    assert exact_schedule(_lrs(runs["constant"]), [lr, lr, lr])
    assert exact_schedule(_lrs(adam), [lr, lr * 2 / 3, lr / 3])  # default: linear decay over the run, no warmup

    samples = runs["samples"]
    assert samples["steps"] == 5
    assert exact_schedule(_lrs(samples), [0.0, lr, lr, (2 * 0.5 ** 0.5 - 1) * lr, 0.0])

    rampup = runs["rampup"]
    assert rampup["steps"] == 6
    assert iteration_fields(rampup["stdout"], "global batch size") == [2, 2, 4, 6, 6, 6]
    assert iteration_fields(rampup["stdout"], "consumed samples") == [2, 4, 8, 14, 20, 26]

    decoupled = runs["decoupled"]
    groups = decoupled["groups"][0]
    assert [g["numel"] for g in groups if g["decoupled"]] == [504 * 32]  # the (tied) word embedding
    assert exact_schedule(_lrs(decoupled, decoupled=True), [1e-2, 1e-3 + 9e-3 * 2 / 3, 1e-3 + 9e-3 / 3])
    assert exact_schedule(_lrs(decoupled), _lrs(adam))
    assert iteration_fields(decoupled["stdout"], "decoupled learning rate")[0] == pytest.approx(1e-3 + 9e-3 * 2 / 3)




# ------------------------------------------------------------------------------------------------
# No flag is declared implemented without a test that uses it.

# Megatron's groups whose implemented flags must each appear in a run of the flag-coverage files
# (this one, test_flag_coverage_io.py, test_flag_coverage_loop.py and their flag_runs.py).
GROUPS_RUN_HERE = ("network size", "regularization", "training", "initialization", "learning rate", "checkpointing",
                   "mixed precision", "logging", "validation", "data and dataloader")
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)


def _spelled(flag, text):
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


def _implemented():
    from megatron.training.arguments import all_options
    from megatron.training.arguments.option import IMPLEMENTED
    return [option for option in all_options() if option.state == IMPLEMENTED]


def _read_all(paths):
    texts = []
    for path in paths:
        with open(path) as f:
            texts.append(f.read())
    return "\n".join(texts)


def test_every_implemented_flag_is_exercised_by_a_test():
    coverage_files = glob.glob(os.path.join(HERE, "test_flag_coverage*.py")) + [os.path.join(HERE, "flag_runs.py")]
    here = _read_all(coverage_files)
    missing_here = [option.primary for option in _implemented() if option.group in GROUPS_RUN_HERE
                    and not any(_spelled(flag, here) for flag in option.flags)]
    assert not missing_here, (f"implemented flags with no run in the flag-coverage tests: {missing_here}; add a "
                              "run that uses each (and checks its effect), or declare it unsupported")
    everything = _read_all(glob.glob(os.path.join(TESTS, "**", "*.py"), recursive=True))
    missing = [option.primary for option in _implemented()
               if not any(_spelled(flag, everything) for flag in option.flags)]
    assert not missing, f"implemented flags that no test under tests/ uses: {missing}"
