"""Megatron's "checkpointing" group: where and how often to save, what to load."""

from ..option import DEPRECATED, IMPL_CHOICE, UNSUPPORTED, OptionGroup

group = OptionGroup("checkpointing")

_OWN_FORMAT = "saved in our own per-rank format for now"
_NON_PERSISTENT = "non-persistent (fast, temporary) checkpoints"

group.value("--save", help="Directory checkpoints are saved to.")
group.value("--save-interval", "--persistent-save-interval", type=int,
            old_flags=("--persistent-save-interval",),
            help="Iterations between checkpoint saves.")
group.value("--save-retain-interval", type=int,
            help="Keep only checkpoints at multiples of this (the latest is always kept).")
group.switch("--no-save-optim", default=None, help="Do not save the optimizer state.")
group.switch("--no-save-rng", default=None, help="Do not save the random-number state.")
group.value("--load", help="Directory to load a checkpoint from (its latest, by the tracker).")
group.switch("--no-load-optim", default=None, help="Do not load the optimizer state.")
group.switch("--load-main-params-from-ckpt", default=None, state=UNSUPPORTED,
             help="Load fp32 main parameters directly from the checkpoint.")
group.switch("--no-load-rng", default=None, help="Do not load the random-number state.")
group.negation("--no-strict-fsdp-dtensor-load", dest="strict_fsdp_dtensor_load",
               state=UNSUPPORTED, help="Lenient loading of fsdp_dtensor checkpoints.")
group.value("--non-persistent-save-interval", type=int, state=UNSUPPORTED, note=_NON_PERSISTENT,
            help="Iterations between non-persistent saves.")
group.value("--non-persistent-ckpt-type", choices=("global", "local", "in_memory"),
            state=UNSUPPORTED, note=_NON_PERSISTENT, help="Kind of non-persistent checkpoint.")
group.value("--non-persistent-global-ckpt-dir", state=UNSUPPORTED, note=_NON_PERSISTENT,
            help="Directory of global non-persistent checkpoints.")
group.value("--non-persistent-local-ckpt-dir", state=UNSUPPORTED, note=_NON_PERSISTENT,
            help="Directory of local non-persistent checkpoints.")
group.value("--non-persistent-local-ckpt-algo", default="fully_parallel",
            choices=("fully_parallel", "atomic"), state=UNSUPPORTED, note=_NON_PERSISTENT,
            help="How local non-persistent checkpoints are written.")
group.switch("--finetune",
             help="Load model weights only and start from iteration 0 (no optimizer or RNG "
                  "state).")
group.value("--pretrained-checkpoint",
            help="Weights to fine-tune from when --load holds no checkpoint.")
group.value("--ckpt-step", type=int, help="Load this iteration instead of the latest.")
group.negation("--no-initialization", dest="perform_initialization", state=IMPL_CHOICE,
               note="weights are always initialized; it only costs start-up time",
               help="Skip weight initialization when a checkpoint will be loaded.")
group.switch("--use-checkpoint-args",
             help="Take the model's shape arguments from the checkpoint being loaded.")
group.switch("--use-mp-args-from-checkpoint-args", state=UNSUPPORTED,
             help="Take the parallel layout from the checkpoint being loaded.")
group.negation("--no-use-tokenizer-model-from-checkpoint-args",
               dest="use_tokenizer_model_from_checkpoint_args", state=UNSUPPORTED,
               help="With --use-checkpoint-args, keep the command line's tokenizer model.")
group.switch("--exit-on-missing-checkpoint",
             help="Fail when --load holds no checkpoint instead of starting from scratch.")
group.switch("--use-dist-ckpt", dest="use_dist_ckpt_deprecated", state=DEPRECATED,
             note="no effect; --ckpt-format picks the format", help="Old switch, no effect.")
group.switch("--use-persistent-ckpt-worker", state=UNSUPPORTED,
             help="Keep a worker process for asynchronous saves.")
group.switch("--auto-detect-ckpt-format", state=UNSUPPORTED,
             help="Detect the checkpoint format when loading.")
group.value("--dist-ckpt-format", dest="dist_ckpt_format_deprecated", state=DEPRECATED,
            note="no effect; --ckpt-format picks the format", help="Old option, no effect.")
group.value("--ckpt-format", default="torch_dist",
            choices=("torch", "torch_dist", "zarr", "torch_dcp", "fsdp_dtensor"),
            state=IMPL_CHOICE, note=_OWN_FORMAT,
            unsupported_values=frozenset({"zarr", "torch_dcp", "fsdp_dtensor"}),
            supported_text="torch and torch_dist accepted", help="Checkpoint format.")
group.value("--ckpt-convert-format", choices=("torch", "torch_dist", "zarr"), state=UNSUPPORTED,
            help="Convert the loaded checkpoint to this format.")
group.value("--ckpt-convert-save", state=UNSUPPORTED, help="Where the converted checkpoint goes.")
group.switch("--ckpt-convert-update-legacy-dist-opt-format", state=UNSUPPORTED,
             help="Update an old distributed-optimizer checkpoint layout on load.")
group.switch("--ckpt-fully-parallel-save", dest="ckpt_fully_parallel_save_deprecated",
             state=DEPRECATED, note="no effect; parallel save is the default",
             help="Old switch, no effect.")
group.negation("--no-ckpt-fully-parallel-save", dest="ckpt_fully_parallel_save",
               state=IMPL_CHOICE, note="every rank always writes its own files",
               help="Do not spread checkpoint writing over data-parallel ranks.")
group.switch("--async-save", default=None, state=UNSUPPORTED,
             help="Write checkpoints in the background.")
group.switch("--ckpt-fully-parallel-load", state=IMPL_CHOICE,
             note="every rank always reads its own files",
             help="Spread checkpoint reading over data-parallel ranks.")
group.switch("--ckpt-assume-constant-structure", state=IMPL_CHOICE,
             note="only a speed-up of Megatron's format; changes nothing here",
             help="Reuse the save plan between saves.")
group.value("--dist-ckpt-strictness", default="assume_ok_unexpected",
            choices=("assume_ok_unexpected", "log_unexpected", "log_all", "raise_unexpected",
                     "raise_all", "return_unexpected", "return_all", "ignore_all"),
            state=UNSUPPORTED, help="What to do with mismatched keys when loading.")
group.switch("--dist-ckpt-save-pre-mcore-014", state=UNSUPPORTED,
             help="Save in the layout of Megatron-Core before 0.14.")
group.switch("--dist-ckpt-optim-fully-reshardable", state=UNSUPPORTED,
             help="Make the optimizer checkpoint reshardable across every parallel dimension.")
group.switch("--distrib-optim-fully-reshardable-mem-efficient", state=UNSUPPORTED,
             help="Save memory while saving a fully reshardable optimizer checkpoint.")
