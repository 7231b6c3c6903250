"""Megatron's "logging" group: what the log line, tensorboard and W&B receive."""

from ..option import UNSUPPORTED, OptionGroup

group = OptionGroup("logging")

group.switch("--log-params-norm", help="Add the parameters' norm to the log line.")
group.switch("--log-num-zeros-in-grad", help="Add the number of zero gradients to the log line.")
group.switch("--log-throughput", help="Add TFLOP/s per GPU to the log line.")
group.switch("--log-progress",
             help="Write progress.txt (tokens and FLOPs so far) in the checkpoint directory.")
group.value("--timing-log-level", type=int, default=0, choices=(0, 1, 2),
            help="Timer detail: 0 iteration time only, 1 once-per-step parts, 2 everything.")
group.switch("--log-energy", state=UNSUPPORTED, help="Log GPU energy use.")
group.negation("--no-barrier-with-level-1-timing", dest="barrier_with_L1_time",
               help="Do not put a barrier before level-1 timers.")
group.value("--timing-log-option", default="minmax", choices=("max", "minmax", "all"),
            help="Which ranks' timings to report: the max, min and max, or all.")
group.value("--tensorboard-log-interval", type=int, default=1,
            help="Iterations between tensorboard writes.")
group.value("--tensorboard-queue-size", type=int, default=1000,
            help="Pending tensorboard events before a flush.")
group.switch("--log-timers-to-tensorboard", help="Write timers to tensorboard.")
group.negation("--no-log-loss-scale-to-tensorboard", dest="log_loss_scale_to_tensorboard",
               help="Do not write the loss scale to tensorboard.")
group.switch("--log-validation-ppl-to-tensorboard",
             help="Write validation perplexity to tensorboard.")
group.switch("--log-memory-to-tensorboard", help="Write memory use to tensorboard.")
group.switch("--log-world-size-to-tensorboard", help="Write the world size to tensorboard.")
group.value("--wandb-project", default="",
            help="Weights & Biases project; W&B logging is on when this is given (needs the "
                 "wandb package).")
group.value("--wandb-entity", default="", help="Weights & Biases entity (team or user).")
group.value("--wandb-exp-name", default="", help="Weights & Biases run name.")
group.value("--wandb-save-dir", default="", help="Local directory for W&B files.")
group.value("--logging-level", type=int, help="Python logging level (e.g. 20 for INFO).")
