"""Megatron's "training" group: batch sizes, run length, recompute, fusions, profiling."""

from ..option import DEPRECATED, IMPL_CHOICE, REMOVED, UNSUPPORTED, OptionGroup
from .migrate import replace

group = OptionGroup("training")

_FUSION = ("fusions only change speed: kernels come from torch.compile or installed Triton "
           "libraries when available, plain torch otherwise, with the same results")
_TE_OVERLAP = ("no Transformer Engine userbuffers: tensor-parallel communication runs as plain "
               "collectives")
_MOE = "mixture-of-experts models"

group.value("--micro-batch-size", type=int, help="Samples per model replica per micro-step.")


def _batch_size(args, value):
    replace(args, "micro_batch_size", value, "--batch-size", "--micro-batch-size")


group.value("--batch-size", type=int, state=DEPRECATED, note="use --micro-batch-size",
            migrate=_batch_size, help="Old name of the micro-batch size.")
group.value("--global-batch-size", type=int,
            help="Samples per optimizer step; micro-batch size x data-parallel size when not "
                 "given, and a multiple of it otherwise (the ratio is the number of micro-steps).")
group.value("--rampup-batch-size", type=int, nargs="*", metavar="N",
            help="Grow the global batch: START INCREMENT RAMP_SAMPLES.")
group.switch("--decrease-batch-size-if-needed", state=UNSUPPORTED,
             help="Shrink the global batch when the data-parallel size no longer divides it.")
group.switch("--recompute-activations",
             help="Recompute attention activations in the backward pass (selective recompute).")
group.value("--recompute-granularity", choices=("full", "selective"),
            help="full: recompute whole layers; selective: the --recompute-modules parts.")
group.negation("--no-check-for-nan-in-loss-and-grad", dest="check_for_nan_in_loss_and_grad",
               help="Skip the check for NaN in the loss and gradients.")
group.switch("--check-for-spiky-loss", state=UNSUPPORTED, help="Check for loss spikes.")
group.switch("--check-for-large-grads", state=UNSUPPORTED,
             help="Check for unexpectedly large gradients.")
group.switch("--distribute-saved-activations",
             help="Keep 1/TP of each recomputed chunk's saved input per tensor-parallel rank "
                  "(full recompute, TP > 1, no sequence parallelism).")
group.value("--recompute-method", choices=("uniform", "block"),
            help="uniform: recompute every chunk of --recompute-num-layers layers; block: "
                 "recompute only the first --recompute-num-layers layers.")
group.value("--recompute-num-layers", type=int,
            help="Layers per recompute chunk (uniform) or layers recomputed (block).")
group.value("--recompute-modules", nargs="*",
            choices=("core_attn", "layernorm", "mlp", "moe_act", "mla_up_proj", "moe",
                     "shared_experts"),
            unsupported_values=frozenset({"moe_act", "mla_up_proj", "moe", "shared_experts"}),
            supported_text="core_attn, layernorm and mlp for now",
            help="Parts recomputed with selective granularity (default: core_attn).")
group.value("--cpu-offloading-num-layers", type=int, default=0, state=UNSUPPORTED,
            help="Layers whose activations are offloaded to CPU.")
group.negation("--no-clone-scatter-output-in-embedding",
               dest="clone_scatter_output_in_embedding", state=IMPL_CHOICE,
               note="our embedding output needs no clone; the flag changes nothing",
               help="Do not clone the embedding's scattered output.")
group.switch("--profile", help="Mark a window of steps for nsys (CUDA profiler start/stop).")
group.value("--profile-step-start", type=int, default=10, help="First profiled step.")
group.value("--profile-step-end", type=int, default=12, help="Step where profiling stops.")
group.value("--iterations-to-skip", type=int, nargs="+", default=[], state=UNSUPPORTED,
            help="Iterations whose batches are skipped.")
group.value("--result-rejected-tracker-filename", state=UNSUPPORTED,
            help="File tracking rejected results of the re-run machine.")
group.negation("--disable-gloo-process-groups", dest="enable_gloo_process_groups",
               state=UNSUPPORTED, help="Do not create Gloo process groups next to NCCL ones.")
group.switch("--use-pytorch-profiler", help="Profile with torch.profiler (tensorboard trace).")
group.value("--profile-ranks", type=int, nargs="+", default=[0], help="Ranks that profile.")
group.switch("--record-memory-history", state=UNSUPPORTED,
             help="Record CUDA memory history on the last rank.")
group.value("--memory-snapshot-path", default="snapshot.pickle", state=UNSUPPORTED,
            help="Where the memory history is written.")
group.switch("--tp-comm-overlap", state=IMPL_CHOICE, note=_TE_OVERLAP,
             help="Overlap tensor-parallel communication with GEMMs.")
group.value("--tp-comm-overlap-cfg", state=IMPL_CHOICE, note=_TE_OVERLAP,
            help="Userbuffer configuration file of --tp-comm-overlap.")
for flag, dest in (("--disable-tp-comm-overlap-ag", "tp_comm_overlap_ag"),
                   ("--disable-tp-comm-overlap-rs", "tp_comm_overlap_rs"),
                   ("--disable-tp-comm-bulk-dgrad", "tp_comm_bulk_dgrad"),
                   ("--disable-tp-comm-bulk-wgrad", "tp_comm_bulk_wgrad"),
                   ("--disable-tp-comm-split-ag", "tp_comm_split_ag"),
                   ("--disable-tp-comm-split-rs", "tp_comm_split_rs")):
    group.negation(flag, dest=dest, state=IMPL_CHOICE, note=_TE_OVERLAP,
                   help="Turn off one kind of --tp-comm-overlap.")
group.switch("--tp-comm-overlap-rs-dgrad", state=IMPL_CHOICE, note=_TE_OVERLAP,
             help="Overlap reduce-scatter with the data-gradient GEMM.")
group.value("--tp-comm-bootstrap-backend", default="nccl", choices=("nccl", "mpi", "gloo"),
            state=IMPL_CHOICE, note=_TE_OVERLAP, help="Bootstrap backend of the userbuffers.")
group.switch("--use-cpu-initialization", default=None, state=IMPL_CHOICE,
             note="weights are always initialized from each parameter's global name, identical "
                  "for every parallel layout",
             help="Initialize weights on the CPU.")
group.value("--empty-unused-memory-level", type=int, default=0, choices=(0, 1, 2),
            help="Release cached GPU memory every step: 0 never, 1 after the step, 2 also "
                 "after the forward-backward.")
group.switch("--deterministic-mode", help="Choose deterministic kernels (slower, repeatable).")
group.value("--check-weight-hash-across-dp-replicas-interval", type=int,
            help="Every N steps, check that data-parallel replicas hold identical weights.")
group.switch("--calculate-per-token-loss",
             help="Normalize the loss by the number of non-padded tokens in the global batch.")
group.value("--train-sync-interval", type=int, state=UNSUPPORTED,
            help="Synchronize CPU and GPU every N steps.")


def _checkpoint_activations(args, value):
    # What Megatron-LM did with it before removing it: full recompute, uniform chunks.
    replace(args, "recompute_granularity", "full", "--checkpoint-activations",
            "--recompute-granularity")
    replace(args, "recompute_method", "uniform", "--checkpoint-activations", "--recompute-method")
    if args.recompute_num_layers is None:
        args.recompute_num_layers = 1


group.switch("--checkpoint-activations", state=DEPRECATED,
             note="use --recompute-granularity full --recompute-method uniform "
                  "--recompute-num-layers 1",
             migrate=_checkpoint_activations, help="Old switch for full activation recompute.")


def _checkpoint_num_layers(args, value):
    replace(args, "recompute_num_layers", value, "--checkpoint-num-layers",
            "--recompute-num-layers")


group.value("--checkpoint-num-layers", type=int, state=DEPRECATED,
            note="use --recompute-num-layers", migrate=_checkpoint_num_layers,
            help="Old name of --recompute-num-layers.")
group.value("--train-iters", type=int,
            help="Run length in iterations (give this or --train-samples).")
group.value("--train-samples", type=int,
            help="Run length in samples (give this or --train-iters).")
group.value("--log-interval", type=int, default=100, help="Iterations between log lines.")
group.value("--exit-interval", type=int,
            help="Save and exit when the iteration is a multiple of this.")
group.value("--exit-duration-in-mins", type=int, help="Save and exit after this many minutes.")
group.switch("--exit-signal-handler", help="On SIGTERM, save a checkpoint and exit.")
group.value("--tensorboard-dir", help="Write tensorboard logs here.")
for flag, dest, what in (("--no-masked-softmax-fusion", "masked_softmax_fusion",
                          "scaling, masking and softmax"),
                         ("--no-bias-gelu-fusion", "bias_gelu_fusion", "bias add and GeLU"),
                         ("--no-bias-swiglu-fusion", "bias_swiglu_fusion", "bias add and SwiGLU"),
                         ("--no-bias-dropout-fusion", "bias_dropout_fusion",
                          "bias add, dropout and residual add"),
                         ("--no-rope-fusion", "apply_rope_fusion", "RoPE")):
    group.negation(flag, dest=dest, state=IMPL_CHOICE, note=_FUSION,
                   help=f"Do not fuse {what}.")
group.switch("--use-fused-weighted-squared-relu", state=UNSUPPORTED, note=_MOE,
             help="Fused weighted squared ReLU for experts.")
group.value("--rope-type", choices=("rope", "yarn"), unsupported_values=frozenset({"yarn"}),
            supported_text="only rope for now", help="RoPE variant.")
group.switch("--cross-entropy-loss-fusion", state=IMPL_CHOICE, note=_FUSION,
             help="Fuse the vocabulary-parallel cross entropy.")
group.value("--cross-entropy-fusion-impl", default="native", choices=("native", "te"),
            state=IMPL_CHOICE, note=_FUSION, help="Which fused cross entropy.")
group.switch("--use-flash-attn", state=IMPL_CHOICE,
             note="torch scaled_dot_product_attention uses flash kernels where it can",
             help="Use FlashAttention.")
group.negation("--disable-bias-linear", dest="add_bias_linear",
               help="Drop the biases of all linear layers.")
group.switch("--add-qkv-bias", help="Keep a bias on the QKV projection only (Qwen style).")
group.value("--optimizer", default="adam",
            choices=("adam", "sgd", "muon", "dist_muon", "lion", "soap", "adaptive_muon"),
            unsupported_values=lambda value: value not in ("adam", "sgd"),
            supported_text="adam and sgd for now", help="Optimizer.")
for flag in ("--optimizer-cpu-offload", "--use-torch-optimizer-for-cpu-offload",
             "--overlap-cpu-optimizer-d2h-h2d"):
    group.switch(flag, state=UNSUPPORTED, help="Optimizer CPU offload.")
group.value("--optimizer-offload-fraction", type=float, default=1.0, state=UNSUPPORTED,
            help="Share of optimizer state offloaded to CPU.")
group.value("--dump-param-to-param-group-map", state=UNSUPPORTED,
            help="File mapping parameters to parameter groups.")
group.negation("--no-pin-cpu-grads", dest="pin_cpu_grads", state=UNSUPPORTED,
               help="Do not pin CPU gradient memory (optimizer offload).")
group.negation("--no-pin-cpu-params", dest="pin_cpu_params", state=UNSUPPORTED,
               help="Do not pin CPU parameter memory (optimizer offload).")
group.value("--dataloader-type", choices=("single", "cyclic", "external"),
            help="single: one pass in order; cyclic: reshuffle every epoch; external: the "
                 "dataset provider returns iterators (default: single).")
group.negation("--no-async-tensor-model-parallel-allreduce",
               dest="async_tensor_model_parallel_allreduce", state=DEPRECATED,
               note="ignored, as in Megatron-LM", help="Old switch, no effect.")
group.switch("--no-persist-layer-norm", state=IMPL_CHOICE,
             note="no Apex persistent kernel; layer norm is torch's",
             help="Do not use Apex's persistent layer-norm kernel.")
group.switch("--sequence-parallel",
             help="Split layer norms and dropout along the sequence across tensor-parallel "
                  "ranks (needs --tensor-model-parallel-size > 1).")
group.negation("--no-gradient-accumulation-fusion", dest="gradient_accumulation_fusion",
               state=IMPL_CHOICE,
               note="weight gradients accumulate into the fp32 main-grad buffer with torch ops",
               help="Do not fuse weight-gradient accumulation into the GEMM.")
group.switch("--use-mcore-models", dest="deprecated_use_mcore_models", state=DEPRECATED,
             note="ignored: Megatron-Core models are the only models",
             help="Old switch for Megatron-Core models.")
group.switch("--use-legacy-models", state=REMOVED,
             note="the Megatron-Core models are the only models; remove the flag",
             help="Megatron's pre-core model classes.")
group.switch("--manual-gc", help="Run Python's garbage collector only at chosen steps.")
group.value("--manual-gc-interval", type=int, default=0,
            help="Steps between manual collections (0: only around evaluation).")
group.negation("--no-manual-gc-eval", dest="manual_gc_eval",
               help="With --manual-gc, do not collect around evaluation.")
group.value("--pipeline-model-parallel-comm-backend", choices=("nccl", "ucc"),
            state=UNSUPPORTED, help="Backend of pipeline send/receive.")
group.value("--high-priority-stream-groups", nargs="*", default=[], state=IMPL_CHOICE,
            note="communication streams keep their default priority",
            help="Process groups whose streams get high priority.")
group.switch("--use-te-activation-func", state=IMPL_CHOICE,
             note="activation functions are torch's", help="Transformer Engine activations.")
