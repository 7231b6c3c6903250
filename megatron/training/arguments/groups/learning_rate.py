"""Megatron's "learning rate" group: the LR schedule (warmup, decay, WSD)."""

from ..option import DEPRECATED, OptionGroup
from .migrate import replace

group = OptionGroup("learning rate")

group.value("--lr", type=float, help="Peak learning rate.")
group.value("--lr-decay-style", default="linear",
            choices=("constant", "linear", "cosine", "inverse-square-root", "WSD"),
            help="Shape of the decay after warmup (WSD: warmup-stable-decay).")
group.value("--lr-wsd-decay-style", default="exponential",
            choices=("exponential", "linear", "cosine", "minus_sqrt"),
            help="Shape of the final decay phase of WSD.")
group.value("--lr-decay-iters", type=int,
            help="Iterations over which the LR decays (default: --train-iters).")
group.value("--lr-decay-samples", type=int,
            help="Samples over which the LR decays (default: --train-samples).")
group.value("--lr-wsd-decay-samples", type=int, help="Samples of WSD's final decay phase.")
group.value("--lr-wsd-decay-iters", type=int, help="Iterations of WSD's final decay phase.")
group.value("--lr-warmup-fraction", type=float,
            help="Warmup as a fraction of the decay horizon.")
group.value("--lr-warmup-iters", type=int, default=0, help="Warmup length in iterations.")
group.value("--lr-warmup-samples", type=int, default=0, help="Warmup length in samples.")
group.value("--lr-warmup-init", type=float, default=0.0, help="LR at the start of warmup.")


def _warmup(args, value):
    # Megatron-LM 1.x took a fraction here; later scripts pass an iteration count.
    if value < 1:
        replace(args, "lr_warmup_fraction", value, "--warmup", "--lr-warmup-fraction")
    else:
        replace(args, "lr_warmup_iters", int(value), "--warmup", "--lr-warmup-iters")


group.value("--warmup", type=float, state=DEPRECATED,
            note="use --lr-warmup-fraction (values below 1) or --lr-warmup-iters",
            migrate=_warmup, help="Old warmup option.")
group.value("--min-lr", type=float, default=0.0, help="Floor of the learning rate.")
group.switch("--override-opt_param-scheduler", "--override-opt-param-scheduler",
             help="Take the schedule from the command line, ignoring the checkpoint's.")
group.switch("--use-checkpoint-opt_param-scheduler", "--use-checkpoint-opt-param-scheduler",
             help="Take the schedule from the checkpoint, ignoring the command line.")
group.value("--decoupled-lr", type=float,
            help="Separate learning rate for the input embedding and output layer.")
group.value("--decoupled-min-lr", type=float, help="Floor of --decoupled-lr.")
