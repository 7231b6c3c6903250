"""Flags of other projects that turn up in Megatron recipes, each with what to use here instead.

Megatron-DeepSpeed, the epfLLM fork (Meditron) and old Megatron-LM releases added flags that
Megatron-LM never had. Launch scripts copied from them should fail with a message that says what
the equivalent is, not with a bare "unrecognized argument".
"""

_DEEPSPEED = "DeepSpeed is not used here"
_ZERO = (f"{_DEEPSPEED}; ZeRO-1 (optimizer state sharded over data-parallel ranks) is "
         "--use-distributed-optimizer; for more memory savings add activation recompute "
         "(--recompute-activations, or --recompute-granularity full --recompute-method uniform)")
_CPU_OFFLOAD = ("optimizer CPU offload is not available; use --use-distributed-optimizer to shard "
                "optimizer state over data-parallel ranks, or a smaller --micro-batch-size with "
                "--recompute-activations to save memory")
_DS_RECOMPUTE = (f"{_DEEPSPEED}; use --recompute-activations (selective) or "
                 "--recompute-granularity full --recompute-method uniform "
                 "--recompute-num-layers 1")

# Keyed by spelling with dashes; underscore spellings are looked up after '_' -> '-'.
FOREIGN_FLAGS = {
    # Megatron-DeepSpeed
    "--deepspeed": f"{_DEEPSPEED}: remove the flag; data parallelism is built in "
                   "(launch with torchrun), --use-distributed-optimizer shards optimizer state "
                   "(ZeRO-1) and --recompute-activations / --recompute-granularity full checkpoint "
                   "activations",
    "--deepspeed-config": f"{_DEEPSPEED}: put the batch sizes, precision and optimizer settings "
                          "on the command line (--micro-batch-size, --global-batch-size, --bf16, "
                          "--lr, ...) or in a --config FILE.yaml of Megatron flag names",
    "--deepscale": f"{_DEEPSPEED}: remove the flag",
    "--deepscale-config": f"{_DEEPSPEED}: use --config FILE.yaml with Megatron flag names",
    "--deepspeed-mpi": f"{_DEEPSPEED}: launch with torchrun",
    "--zero-stage": _ZERO,
    "--zero-reduce-scatter": _ZERO,
    "--zero-contigious-gradients": _ZERO,
    "--zero-reduce-bucket-size": f"{_DEEPSPEED}; the data-parallel bucket size is "
                                 "--ddp-bucket-size",
    "--zero-allgather-bucket-size": f"{_DEEPSPEED}; the data-parallel bucket size is "
                                    "--ddp-bucket-size",
    "--remote-device": _CPU_OFFLOAD,
    "--use-pin-memory": _CPU_OFFLOAD,
    "--cpu-optimizer": _CPU_OFFLOAD,
    "--cpu-torch-adam": _CPU_OFFLOAD,
    "--use-checkpoint-activations": _DS_RECOMPUTE,
    "--deepspeed-activation-checkpointing": _DS_RECOMPUTE,
    "--partition-activations": f"{_DEEPSPEED}; sharding the saved inputs of recomputed layers "
                               "over tensor-parallel ranks is --distribute-saved-activations "
                               "(with --recompute-granularity full, TP > 1, no "
                               "--sequence-parallel)",
    "--contigious-checkpointing": _DS_RECOMPUTE,
    "--checkpoint-in-cpu": _CPU_OFFLOAD,
    "--synchronize-each-layer": f"{_DEEPSPEED}: remove the flag",
    "--profile-backward": f"{_DEEPSPEED}; use --profile or --use-pytorch-profiler",
    "--no-pipeline-parallel": f"{_DEEPSPEED}; use --pipeline-model-parallel-size 1",
    "--ds-inference": f"{_DEEPSPEED}: remove the flag",
    "--ds-sequence-parallel-size": f"{_DEEPSPEED} (Ulysses); context parallelism is "
                                   "--context-parallel-size",
    "--moe-expert-parallel-size": "Megatron's name is --expert-model-parallel-size",
    "--topk": "Megatron's name is --moe-router-topk",
    "--mlp-type": "mixture-of-residual-experts is a Megatron-DeepSpeed feature; remove the flag",
    "--split-transformers": f"{_DEEPSPEED}: remove the flag",
    "--memory-centric-tiled-linear": f"{_DEEPSPEED}: remove the flag",
    "--tile-factor": f"{_DEEPSPEED}: remove the flag",
    "--scattered-embeddings": f"{_DEEPSPEED}: remove the flag",
    # epfLLM / Meditron fork
    "--use-rms-norm": "use --normalization RMSNorm",
    "--glu-activation": "use --swiglu (the only gated activation here)",
    "--no-tie-embed-logits": "use --untie-embeddings-and-output-weights",
    "--tie-embed-logits": "embeddings and output weights are tied by default: remove the flag",
    "--layernorm-epsilon": "use --norm-epsilon",
    "--model-name": "there is no model registry: give the architecture flags "
                    "(e.g. Llama 2: --normalization RMSNorm --swiglu --position-embedding-type "
                    "rope --untie-embeddings-and-output-weights --disable-bias-linear)",
    "--model-type": "there is no model registry: give the architecture flags explicitly",
    "--no-new-tokens": "special tokens come from the tokenizer; remove the flag",
    "--use-post-ln": "use --apply-residual-connection-post-layernorm",
    "--parallel-attn": "parallel attention blocks are not supported yet",
    "--parallel-layernorm": "parallel attention blocks are not supported yet",
    "--use-bias": "biases are on by default; --disable-bias-linear turns them off",
    "--lima-dropout": "use --hidden-dropout and --attention-dropout",
    "--log-learning-rate-to-tensorboard": "the learning rate is always written to tensorboard: "
                                          "remove the flag",
    "--wandb-logger": "use --wandb-project NAME (plus --wandb-exp-name, --wandb-entity)",
    "--wandb-id": "use --wandb-exp-name",
    "--wandb-resume": "remove the flag; runs are named by --wandb-exp-name",
    "--metrics": "the console line and tensorboard carry loss, learning rate and throughput; "
                 "use --log-throughput",
    "--freeze-layers": "freezing layers is not supported yet",
    "--rope-scaling-factor-type": "use --use-rope-scaling with --rope-scaling-factor",
    "--rope-theta": "use --rotary-base",
    # Old Megatron-LM spellings that were renamed or removed
    "--DDP-impl": "removed from Megatron-LM; data parallelism is always Megatron's own "
                  "(--overlap-grad-reduce, --use-distributed-optimizer)",
    "--no-scaled-masked-softmax-fusion": "renamed in Megatron-LM: --no-masked-softmax-fusion",
    "--distribute-checkpointed-activations": "renamed in Megatron-LM: "
                                             "--distribute-saved-activations",
    "--activations-checkpoint-method": "renamed in Megatron-LM: --recompute-method",
    "--activations-checkpoint-num-layers": "renamed in Megatron-LM: --recompute-num-layers",
    "--num-layers-per-stage": "use --decoder-first-pipeline-num-layers / "
                              "--decoder-last-pipeline-num-layers",
    "--log-batch-size-to-tensorboard": "removed from Megatron-LM; the batch size is always "
                                       "written to tensorboard: remove the flag",
    "--no-log-learnig-rate-to-tensorboard": "removed from Megatron-LM; the learning rate is "
                                            "always written to tensorboard: remove the flag",
    "--no-log-learning-rate-to-tensorboard": "the learning rate is always written to "
                                             "tensorboard: remove the flag",
    "--yaml-cfg": "Megatron's experimental YAML is not read here; use --config FILE.yaml, a flat "
                  "mapping of flag names (without dashes) to values",
}


# Megatron-LM flags of whole features this project does not have; not declared one by one.
MEGATRON_FEATURE_PREFIXES = {
    "--retro-": "Retro", "--inprocess-": "in-process restart", "--grpo-": "RL (GRPO)",
    "--rl-": "RL", "--langrl-": "RL", "--inference-": "Megatron's inference engine",
    "--cuda-graph-": "CUDA graphs", "--dino-": "vision models", "--vision-": "vision models",
    "--heterogeneous-layers-": "heterogeneous models", "--kitchen-": "Kitchen quantization",
    "--sft": "SFT training", "--biencoder-": "biencoder models", "--ict-": "biencoder models",
    "--retriever-": "biencoder models", "--mamba-": "hybrid Mamba models",
}


def lookup(flag):
    """The message for a foreign flag (any spelling: dashes or underscores), or None."""
    name = flag.split("=", 1)[0]
    if not name.startswith("--"):
        return None
    dashed = "--" + name[2:].replace("_", "-")
    if dashed in FOREIGN_FLAGS:
        return FOREIGN_FLAGS[dashed]
    for prefix, feature in MEGATRON_FEATURE_PREFIXES.items():
        if dashed.startswith(prefix):
            return f"a Megatron-LM flag of {feature}, which is not supported yet"
    return None
