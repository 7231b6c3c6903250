"""Megatron's "validation" group: how often and how long to evaluate."""

from ..option import UNSUPPORTED, OptionGroup

group = OptionGroup("validation")

group.switch("--full-validation", help="Evaluate on the whole validation set each time.")
group.switch("--multiple-validation-sets", state=UNSUPPORTED,
             help="Report a separate validation loss for each dataset of the blend.")
group.value("--eval-iters", type=int, default=100, help="Batches per evaluation.")
group.value("--eval-interval", type=int, default=1000, help="Iterations between evaluations.")
group.switch("--test-mode", state=UNSUPPORTED, help="Run Megatron's real-time tests alongside.")
group.switch("--skip-train", help="Skip training: evaluate (if data allows) and exit.")
