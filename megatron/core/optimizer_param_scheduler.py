"""Learning-rate and weight-decay schedules, with Megatron Core's class and checkpoint format.

The scheduler counts "steps" in whatever unit the caller increments it by. Megatron's training
loop steps it by the number of samples in each global batch, so warmup and decay lengths are
sample counts (``megatron.training.lr_schedule.scheduler_from_args`` converts the iteration flags).

LR shape over steps (``n``):

    warmup   n <= warmup:           init_lr + (max_lr - init_lr) * n / warmup
    decay    warmup < n <= decay:   min_lr + coeff(style, progress) * (max_lr - min_lr)
    floor    n > decay:             min_lr   (except 'constant', which stays at max_lr)

Each optimizer param group may carry its own ``max_lr`` / ``min_lr`` (Megatron's decoupled LR for
embedding and output layer) and ``lr_mult`` / ``wd_mult`` factors applied on top.
"""
import logging
import math
from typing import Optional

from megatron.core.errors import ConfigError

logger = logging.getLogger(__name__)

LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
WSD_DECAY_STYLES = ("exponential", "linear", "cosine", "minus_sqrt")
WD_INCR_STYLES = ("constant", "linear", "cosine")

# Key names older Megatron checkpoints used for the same scheduler fields, newest last.
_LEGACY_KEYS = {
    "max_lr": ("start_lr", "max_lr"),
    "lr_warmup_steps": ("warmup_iter", "warmup_steps", "lr_warmup_steps"),
    "lr_decay_steps": ("end_iter", "decay_steps", "lr_decay_steps"),
    "lr_decay_style": ("decay_style", "lr_decay_style"),
    "num_steps": ("num_iters", "num_steps"),
}


def _cosine_coeff(progress: float) -> float:
    """1 at progress 0, 0 at progress 1, half a cosine wave in between."""
    return 0.5 * (math.cos(math.pi * progress) + 1.0)


def _wsd_anneal_coeff(style: str, progress: float) -> float:
    """Coefficient of the WSD anneal phase: 1 at its start, 0 at its end."""
    if style == "linear":
        return 1.0 - progress
    if style == "cosine":
        return _cosine_coeff(progress)
    if style == "exponential":
        return 2.0 * math.pow(0.5, progress) - 1.0
    if style == "minus_sqrt":
        return 1.0 - math.sqrt(progress)
    raise ConfigError(f"--lr-wsd-decay-style must be one of {WSD_DECAY_STYLES}, got {style!r}")


def _first_present(state_dict: dict, field: str):
    for key in reversed(_LEGACY_KEYS[field]):
        if key in state_dict:
            return state_dict[key]
    raise KeyError(f"scheduler checkpoint has no {field!r} (looked for {_LEGACY_KEYS[field]})")


class OptimizerParamScheduler:
    """Sets ``lr`` and ``weight_decay`` of every param group of ``optimizer`` from the step count.

    ``optimizer`` is anything with ``.param_groups`` (a list of dicts).
    """

    def __init__(
        self,
        optimizer,
        init_lr: float,
        max_lr: float,
        min_lr: float,
        lr_warmup_steps: int,
        lr_decay_steps: int,
        lr_decay_style: str,
        start_wd: float,
        end_wd: float,
        wd_incr_steps: int,
        wd_incr_style: str,
        use_checkpoint_opt_param_scheduler: Optional[bool] = True,
        override_opt_param_scheduler: Optional[bool] = False,
        wsd_decay_steps: Optional[int] = None,
        lr_wsd_decay_style: Optional[str] = None,
    ) -> None:
        self.optimizer = optimizer
        self.init_lr = float(init_lr)
        self.max_lr = float(max_lr)
        self.min_lr = float(min_lr)
        self.lr_warmup_steps = lr_warmup_steps
        self.lr_decay_steps = lr_decay_steps
        self.lr_decay_style = lr_decay_style
        self.wsd_decay_steps = wsd_decay_steps
        self.lr_wsd_decay_style = lr_wsd_decay_style
        self.start_wd = float(start_wd)
        self.end_wd = float(end_wd)
        self.wd_incr_steps = wd_incr_steps
        self.wd_incr_style = wd_incr_style
        self.use_checkpoint_opt_param_scheduler = use_checkpoint_opt_param_scheduler
        self.override_opt_param_scheduler = override_opt_param_scheduler
        self.num_steps = 0
        self._validate()
        self.step(0)
        logger.info("> learning rate decay style: %s", self.lr_decay_style)

    def _validate(self) -> None:
        if self.min_lr < 0.0:
            raise ConfigError(f"--min-lr must be >= 0, got {self.min_lr}")
        if self.max_lr < self.min_lr:
            raise ConfigError(f"--lr ({self.max_lr}) must be >= --min-lr ({self.min_lr})")
        if self.init_lr > self.max_lr:
            raise ConfigError(f"--lr-warmup-init ({self.init_lr}) must be <= --lr ({self.max_lr})")
        if self.lr_decay_style not in LR_DECAY_STYLES:
            raise ConfigError(f"--lr-decay-style must be one of {LR_DECAY_STYLES}, got {self.lr_decay_style!r}")
        if not self.lr_decay_steps > 0:
            raise ConfigError(
                f"the LR decay length must be positive, got {self.lr_decay_steps} steps: "
                "set --lr-decay-iters/--lr-decay-samples (or --train-iters/--train-samples)"
            )
        if not self.lr_warmup_steps < self.lr_decay_steps:
            raise ConfigError(
                f"LR warmup ({self.lr_warmup_steps} steps) must be shorter than LR decay "
                f"({self.lr_decay_steps} steps): lower --lr-warmup-iters/--lr-warmup-samples/"
                "--lr-warmup-fraction or raise --lr-decay-iters/--lr-decay-samples"
            )
        if self.lr_decay_style == "WSD":
            if self.wsd_decay_steps is None:
                raise ConfigError("--lr-decay-style WSD needs --lr-wsd-decay-iters or --lr-wsd-decay-samples")
            if self.lr_wsd_decay_style not in WSD_DECAY_STYLES:
                raise ConfigError(
                    f"--lr-wsd-decay-style must be one of {WSD_DECAY_STYLES}, got {self.lr_wsd_decay_style!r}"
                )
        if self.start_wd < 0.0:
            raise ConfigError(f"--start-weight-decay must be >= 0, got {self.start_wd}")
        if self.end_wd < self.start_wd:
            raise ConfigError(
                f"--end-weight-decay ({self.end_wd}) must be >= --start-weight-decay ({self.start_wd})"
            )
        if self.wd_incr_style not in WD_INCR_STYLES:
            raise ConfigError(f"--weight-decay-incr-style must be one of {WD_INCR_STYLES}, got {self.wd_incr_style!r}")
        if self.wd_incr_style == "constant" and self.start_wd != self.end_wd:
            raise ConfigError(
                f"--weight-decay-incr-style constant needs --start-weight-decay == --end-weight-decay, "
                f"got {self.start_wd} and {self.end_wd}"
            )
        if self.override_opt_param_scheduler and self.use_checkpoint_opt_param_scheduler:
            raise ConfigError(
                "--override-opt_param-scheduler and --use-checkpoint-opt_param-scheduler contradict "
                "each other: pass at most one"
            )

    def get_wd(self) -> float:
        """Weight decay at the current step (grows from start_wd to end_wd over wd_incr_steps)."""
        if self.num_steps > self.wd_incr_steps or self.wd_incr_style == "constant":
            return self.end_wd
        progress = float(self.num_steps) / float(self.wd_incr_steps)
        coeff = progress if self.wd_incr_style == "linear" else 1.0 - _cosine_coeff(progress)
        return self.start_wd + coeff * (self.end_wd - self.start_wd)

    def get_lr(self, param_group: dict) -> float:
        """Learning rate of ``param_group`` at the current step, before its ``lr_mult``."""
        max_lr = param_group.get("max_lr", self.max_lr)
        min_lr = param_group.get("min_lr", self.min_lr)
        n = self.num_steps

        if self.lr_warmup_steps > 0 and n <= self.lr_warmup_steps:
            return self.init_lr + (max_lr - self.init_lr) * float(n) / float(self.lr_warmup_steps)
        if self.lr_decay_style == "constant":
            return max_lr
        if n > self.lr_decay_steps:
            return min_lr
        if self.lr_decay_style == "inverse-square-root":
            # Megatron measures this from step 0, not from the end of warmup; steps < 1 count as 1.
            lr = max_lr * math.sqrt(max(self.lr_warmup_steps, 1)) / math.sqrt(max(n, 1))
            return max(min_lr, lr)

        progress = float(n - self.lr_warmup_steps) / float(self.lr_decay_steps - self.lr_warmup_steps)
        if self.lr_decay_style == "linear":
            coeff = 1.0 - progress
        elif self.lr_decay_style == "cosine":
            coeff = _cosine_coeff(progress)
        else:  # WSD: hold max_lr, then anneal over the last wsd_decay_steps of the decay window
            anneal_start = self.lr_decay_steps - self.wsd_decay_steps
            if n <= anneal_start:
                coeff = 1.0
            else:
                anneal_progress = float(n - anneal_start) / float(self.wsd_decay_steps)
                coeff = _wsd_anneal_coeff(self.lr_wsd_decay_style, anneal_progress)
        return min_lr + coeff * (max_lr - min_lr)

    def _apply(self) -> None:
        wd = self.get_wd()
        for group in self.optimizer.param_groups:
            group["lr"] = self.get_lr(group) * group.get("lr_mult", 1.0)
            group["weight_decay"] = wd * group.get("wd_mult", 1.0)

    def step(self, increment: int) -> None:
        """Advance by ``increment`` steps (Megatron: samples in the batch) and set the groups."""
        self.num_steps += increment
        self._apply()

    def state_dict(self) -> dict:
        return {
            "max_lr": self.max_lr,
            "lr_warmup_steps": self.lr_warmup_steps,
            "num_steps": self.num_steps,
            "lr_decay_style": self.lr_decay_style,
            "lr_decay_steps": self.lr_decay_steps,
            "min_lr": self.min_lr,
            "start_wd": self.start_wd,
            "end_wd": self.end_wd,
            "wd_incr_style": self.wd_incr_style,
            "wd_incr_steps": self.wd_incr_steps,
        }

    def _check_and_set(self, class_value, checkpoint_value, name: str):
        """Megatron's rule: override -> the flags win; use-checkpoint -> the checkpoint wins;
        neither -> they must agree."""
        if self.override_opt_param_scheduler:
            logger.info(" > overriding %s value to %s", name, class_value)
            return class_value
        if not self.use_checkpoint_opt_param_scheduler and class_value != checkpoint_value:
            raise ConfigError(
                f"OptimizerParamScheduler: the flags give {name} = {class_value} but the checkpoint has "
                f"{checkpoint_value}. Pass --override-opt_param-scheduler to use the flags' value or "
                "--use-checkpoint-opt_param-scheduler to use the checkpoint's."
            )
        logger.info(" > using checkpoint value %s for %s", checkpoint_value, name)
        return checkpoint_value

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step count and reconcile the schedule values with the checkpoint's."""
        self.max_lr = self._check_and_set(self.max_lr, _first_present(state_dict, "max_lr"), "learning rate")
        self.min_lr = self._check_and_set(self.min_lr, state_dict["min_lr"], "minimum learning rate")
        self.lr_warmup_steps = self._check_and_set(
            self.lr_warmup_steps, _first_present(state_dict, "lr_warmup_steps"), "warmup iterations"
        )
        self.lr_decay_steps = self._check_and_set(
            self.lr_decay_steps, _first_present(state_dict, "lr_decay_steps"), "total number of iterations"
        )
        self.lr_decay_style = self._check_and_set(
            self.lr_decay_style, _first_present(state_dict, "lr_decay_style"), "learning rate decay style"
        )
        # Very old checkpoints carry no weight-decay schedule; they keep the flags' values.
        if "start_wd" in state_dict:
            self.start_wd = self._check_and_set(self.start_wd, state_dict["start_wd"], "start weight decay")
            self.end_wd = self._check_and_set(self.end_wd, state_dict["end_wd"], "end weight decay")
            self.wd_incr_steps = self._check_and_set(
                self.wd_incr_steps, state_dict["wd_incr_steps"], "total number of weight decay iterations"
            )
            self.wd_incr_style = self._check_and_set(
                self.wd_incr_style, state_dict["wd_incr_style"], "weight decay incr style"
            )
        # The step count is absolute (Megatron adds it to a fresh scheduler's 0: the same thing),
        # and the groups are set after every value is reconciled.
        self.num_steps = _first_present(state_dict, "num_steps")
        self._apply()
