"""Training throughput on the benchmark shapes of BENCHMARKS.md, through the real training step.

    megatron-benchmark --shape S2 (or python tools/benchmark.py) [--steps 20 --warmup 5] [any pretrain_gpt.py flag to override]
    torchrun --nproc-per-node 2 tools/benchmark.py --shape S1 --tensor-model-parallel-size 2

Prints one JSON line per shape on stdout (logs go to stderr):
    {"peer": "ours", "variant": ..., "shape": "llama-1.3b", "status": "ok", "micro_batch": 4,
     "grad_accum": 1, "tokens_per_s": ..., "step_time_median_s": ..., "peak_mem_gib": ...,
     "flops_per_token": ..., "mfu": ..., "expected_pipeline_bubble": ...}
tokens/s is per GPU: tokens per step x steps / wall time / world size. expected_pipeline_bubble is the
share of a step the chosen pipeline schedule leaves a stage idle ((p-1)/(v*m+p-1); 0 without PP).
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

from megatron.core.errors import ConfigError

# name -> (aliases, flags). Llama-style: RMSNorm, SwiGLU, RoPE, no biases, untied embeddings;
# NullTokenizer with --vocab-size 31999 gives exactly 32000 ids (it adds its end-of-document id).
SHAPES = {
    "gpt-350m": (("S1",), "--num-layers 24 --hidden-size 1024 --num-attention-heads 16 --ffn-hidden-size 2816 "
                          "--micro-batch-size 8"),
    "llama-1.3b": (("S2",), "--num-layers 24 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5632 "
                            "--micro-batch-size 4"),
}
COMMON = ("--seq-length 2048 --max-position-embeddings 2048 --swiglu --normalization RMSNorm "
          "--position-embedding-type rope --disable-bias-linear --untie-embeddings-and-output-weights "
          "--tokenizer-type NullTokenizer --vocab-size 31999 --make-vocab-size-divisible-by 128 "
          "--bf16 --lr 1e-4 --min-lr 1e-5 --lr-decay-style cosine --clip-grad 1.0 --weight-decay 0.1 "
          "--mock-data --hidden-dropout 0 --attention-dropout 0 --eval-iters 0 --eval-interval 1000000 "
          "--log-interval 1000000 --seed 1234")
PEAK_FLOPS = 989e12  # H100/H200 SXM dense bf16, the denominator BENCHMARKS.md fixes


def shape_names(arg: str):
    if arg == "all":
        return list(SHAPES)
    names = []
    for item in arg.split(","):
        item = item.strip()
        for name, (aliases, _) in SHAPES.items():
            if item == name or item in aliases:
                names.append(name)
                break
        else:
            raise ConfigError(f"--shape: unknown shape {item!r}; known: S1, S2, {', '.join(SHAPES)}, all")
    return names


def run_shape(name: str, warmup: int, steps: int, overrides):
    import torch
    import torch.distributed as dist

    from megatron.training.recipes import gpt as pretrain_gpt
    from megatron.core import device, parallel_state
    from megatron.core.num_microbatches_calculator import get_num_microbatches
    from megatron.core.pipeline_parallel.schedules import expected_bubble_fraction
    from megatron.training.data_iterators import build_train_valid_test_data_iterators
    from megatron.training.initialize import destroy_megatron, initialize_megatron
    from megatron.training.memory_report import print_memory_report
    from megatron.training.model_setup import setup_model_and_optimizer
    from megatron.training.throughput import count_params_for_mfu, palm_flops_per_token, sum_count_over_group
    from megatron.training.train_state import TrainState
    from megatron.core.utils import get_model_config
    from megatron.training.training import train_step

    argv = (COMMON + " " + SHAPES[name][1]).split() + [f"--train-iters={warmup + steps}"] + list(overrides)
    with contextlib.redirect_stdout(sys.stderr):
        args = initialize_megatron(argv=argv)
        model, optimizer, scheduler = setup_model_and_optimizer(pretrain_gpt.model_provider)
        train_it, _, _ = build_train_valid_test_data_iterators(pretrain_gpt.train_valid_test_datasets_provider)
        config = get_model_config(model[0])
        n = sum_count_over_group(count_params_for_mfu(model, parallel_state.get_tensor_model_parallel_rank()),
                                 parallel_state.get_model_parallel_group())
        flops_per_token = palm_flops_per_token(n, args.num_layers, args.hidden_size, args.seq_length)
        tokens_per_step = args.global_batch_size * args.seq_length
        record = {"peer": "ours", "variant": variant_name(args), "shape": name, "micro_batch": args.micro_batch_size,
                  "grad_accum": get_num_microbatches(), "flops_per_token": flops_per_token,
                  "expected_pipeline_bubble": expected_bubble_fraction(
                      args.pipeline_model_parallel_size, get_num_microbatches(),
                      args.virtual_pipeline_model_parallel_size)}
        state = TrainState()
        try:
            for i in range(warmup):
                state.iteration = i
                train_step(pretrain_gpt.forward_step, train_it, model, optimizer, scheduler, config, state)
                if i == 0:
                    print_memory_report(model, optimizer, args)  # on stderr, with the other logs
            device.synchronize()
            events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if device.on_cuda() else None
            start = time.perf_counter()
            marks = [start]
            if events:
                events[0].record()
            for i in range(steps):
                state.iteration = warmup + i
                train_step(pretrain_gpt.forward_step, train_it, model, optimizer, scheduler, config, state)
                if events:
                    events[i + 1].record()
                else:
                    marks.append(time.perf_counter())
            device.synchronize()
            wall = time.perf_counter() - start
            if events:
                step_times = [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(steps)]
            else:
                step_times = [b - a for a, b in zip(marks, marks[1:])]
            world = dist.get_world_size()
            tokens_per_s = tokens_per_step * steps / wall / world
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.on_cuda() else 0.0
            record.update(status="ok", tokens_per_s=tokens_per_s, step_time_median_s=statistics.median(step_times),
                          peak_mem_gib=peak, mfu=flops_per_token * tokens_per_s / PEAK_FLOPS)
        except torch.cuda.OutOfMemoryError as e:
            record.update(status="oom", note=str(e)[:200], tokens_per_s=0.0, step_time_median_s=0.0,
                          peak_mem_gib=0.0, mfu=0.0)
    del model, optimizer, scheduler, train_it
    destroy_megatron()
    if device.on_cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return record


def variant_name(args) -> str:
    parts = ["sdpa", "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32")]
    if args.tensor_model_parallel_size > 1:
        parts.append(f"tp{args.tensor_model_parallel_size}" + ("+sp" if args.sequence_parallel else ""))
    if args.pipeline_model_parallel_size > 1:
        vpp = args.virtual_pipeline_model_parallel_size
        parts.append(f"pp{args.pipeline_model_parallel_size}" + (f"x{vpp}v" if vpp else ""))
    if args.recompute_granularity:
        parts.append(f"recompute-{args.recompute_granularity}")
    return "+".join(parts)


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="S2", help="S1, S2, gpt-350m, llama-1.3b, a comma list, or all")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    opts, overrides = parser.parse_known_args(argv)
    import torch.distributed as dist
    rank = int(os.environ.get("RANK", "0"))
    for name in shape_names(opts.shape):
        record = run_shape(name, opts.warmup, opts.steps, overrides)
        if rank == 0:
            print(json.dumps(record), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> int:
    from megatron.cli.guard import run_main
    return run_main(_main, "benchmark.py", argv)


if __name__ == "__main__":
    raise SystemExit(main())
