"""TensorBoard and W&B output with Megatron-LM's scalar tags and flags.

One ``MetricsWriter`` exists, on the rank Megatron writes from (the last one, which holds the loss
under pipeline parallelism). It writes each TensorBoard scalar twice: against the iteration and,
as ``<tag> vs samples``, against the consumed samples, so runs with different batch sizes line up.
W&B gets each scalar once, against the iteration (as Megatron does).

Training metrics are a mapping from tag to value:
- losses under their own names ('lm loss', ...), written every --tensorboard-log-interval;
- 'learning-rate', 'decoupled-learning-rate', 'batch-size', 'skipped-train-samples', 'grad-norm',
  'num-zeros', 'params-norm': the same interval, when present and not None;
- 'loss-scale': the same, unless --no-log-loss-scale-to-tensorboard;
- 'world-size': the same, with --log-world-size-to-tensorboard (taken from the run when absent);
- 'mem-*-bytes': the same, with --log-memory-to-tensorboard (read from the CUDA allocator when
  absent; nothing on a CPU run);
- 'iteration-time', 'throughput': with --log-timers-to-tensorboard, whenever given (the training
  loop computes them every --log-interval, as Megatron writes them).
"""
import os
from typing import Mapping, Optional

from megatron.core.errors import ConfigError
from megatron.training.log_line import validation_ppl
from megatron.training.throughput import device_memory_bytes

_INTERVAL_TAGS = (
    "learning-rate", "decoupled-learning-rate", "batch-size", "skipped-train-samples",
    "grad-norm", "num-zeros", "params-norm",
)
_MEMORY_TAGS = ("mem-reserved-bytes", "mem-allocated-bytes", "mem-max-allocated-bytes", "mem-allocated-count")
_TIMING_TAGS = ("iteration-time", "throughput")
_NOT_LOSSES = set(_INTERVAL_TAGS + _MEMORY_TAGS + _TIMING_TAGS + ("loss-scale", "world-size"))


def _open_tensorboard(log_dir: str, queue_size: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ConfigError(
            f"--tensorboard-dir {log_dir} asks for TensorBoard logs but the tensorboard package cannot "
            f"be imported ({error}): pip install tensorboard, or leave out --tensorboard-dir"
        ) from error
    return SummaryWriter(log_dir=log_dir, max_queue=queue_size)


def _open_wandb(args):
    try:
        import wandb
    except ImportError:
        print(
            f"WARNING: --wandb-project {args.wandb_project} is set but wandb is not installed: "
            "no W&B logging (pip install wandb to enable it)", flush=True,
        )
        return None
    if not args.wandb_exp_name:
        raise ConfigError("--wandb-project is set: give the run a name with --wandb-exp-name")
    save_dir = args.wandb_save_dir or (
        os.path.join(args.save, "wandb") if args.save else ""
    )
    if not save_dir:
        raise ConfigError("--wandb-project is set: give --wandb-save-dir (or --save, whose wandb/ is used)")
    os.makedirs(save_dir, exist_ok=True)
    kwargs = dict(dir=save_dir, name=args.wandb_exp_name, project=args.wandb_project, config=vars(args))
    if args.wandb_entity:
        kwargs["entity"] = args.wandb_entity
    wandb.init(**kwargs)
    return wandb


class MetricsWriter:
    """Writes training and validation scalars to TensorBoard and/or W&B."""

    def __init__(
        self,
        tensorboard_writer=None,
        wandb_run=None,
        *,
        tensorboard_log_interval: int = 1,
        log_loss_scale: bool = True,
        log_world_size: bool = False,
        log_memory: bool = False,
        log_timers: bool = False,
        log_validation_ppl: bool = False,
        world_size: int = 1,
    ):
        if tensorboard_log_interval < 1:
            raise ValueError(f"--tensorboard-log-interval must be >= 1, got {tensorboard_log_interval}")
        self.tensorboard = tensorboard_writer
        self.wandb = wandb_run
        self.tensorboard_log_interval = tensorboard_log_interval
        self.log_loss_scale = log_loss_scale
        self.log_world_size = log_world_size
        self.log_memory = log_memory
        self.log_timers = log_timers
        self.log_validation_ppl = log_validation_ppl
        self.world_size = world_size

    @classmethod
    def from_args(cls, args, rank: int, world_size: int) -> Optional["MetricsWriter"]:
        """The writer on the last rank when --tensorboard-dir or --wandb-project is set, else None."""
        if rank != world_size - 1:
            return None
        tensorboard = wandb_run = None
        if args.tensorboard_dir:
            tensorboard = _open_tensorboard(args.tensorboard_dir, args.tensorboard_queue_size)
        if args.wandb_project:
            wandb_run = _open_wandb(args)
        if tensorboard is None and wandb_run is None:
            return None
        return cls(
            tensorboard,
            wandb_run,
            tensorboard_log_interval=args.tensorboard_log_interval,
            log_loss_scale=args.log_loss_scale_to_tensorboard,
            log_world_size=args.log_world_size_to_tensorboard,
            log_memory=args.log_memory_to_tensorboard,
            log_timers=args.log_timers_to_tensorboard,
            log_validation_ppl=args.log_validation_ppl_to_tensorboard,
            world_size=world_size,
        )

    def _scalar(self, tag: str, value: float, iteration: int, consumed_samples: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, iteration)
            self.tensorboard.add_scalar(tag + " vs samples", value, consumed_samples)
        if self.wandb is not None:
            self.wandb.log({tag: value}, iteration)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """One scalar against one step, to both back ends (what ``Timers.write`` calls)."""
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log({tag: value}, step)

    def write_training(self, iteration: int, consumed_samples: int, metrics: Mapping[str, float]) -> None:
        """Write one iteration's scalars, as far as the flags and intervals ask for them."""
        if self.log_timers:
            for tag in _TIMING_TAGS:
                if metrics.get(tag) is not None:
                    self._scalar(tag, metrics[tag], iteration, consumed_samples)
        if iteration % self.tensorboard_log_interval != 0:
            return
        if self.wandb is not None:
            self.wandb.log({"samples vs steps": consumed_samples}, iteration)
        chosen = {tag: metrics.get(tag) for tag in _INTERVAL_TAGS}
        chosen.update({tag: value for tag, value in metrics.items() if tag not in _NOT_LOSSES})
        if self.log_loss_scale:
            chosen["loss-scale"] = metrics.get("loss-scale")
        if self.log_world_size:
            chosen["world-size"] = metrics.get("world-size", self.world_size)
        if self.log_memory:
            memory = {tag: metrics[tag] for tag in _MEMORY_TAGS if tag in metrics} or device_memory_bytes() or {}
            chosen.update(memory)
        for tag, value in chosen.items():
            if value is not None:
                self._scalar(tag, value, iteration, consumed_samples)

    def write_validation(
        self, iteration: int, consumed_samples: int, losses: Mapping[str, float], suffix: str = ""
    ) -> None:
        """'<loss> validation' (and its ppl with --log-validation-ppl-to-tensorboard)."""
        for name, value in losses.items():
            self._scalar(f"{name} validation{suffix}", value, iteration, consumed_samples)
            if self.log_validation_ppl:
                self._scalar(f"{name} validation{suffix} ppl", validation_ppl(value), iteration, consumed_samples)

    def flush(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def build_writers(args) -> Optional[MetricsWriter]:
    """``MetricsWriter.from_args`` with this process's ``args.rank`` / ``args.world_size``."""
    return MetricsWriter.from_args(args, args.rank, args.world_size)
