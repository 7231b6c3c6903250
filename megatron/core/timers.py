"""Named timers with Megatron's log levels and its "(min, max) time across ranks (ms):" report.

``timers('forward-backward', log_level=1).start()`` / ``.stop()``; ``timers.log(names, normalizer=
log_interval)`` prints per-timer times across ranks. A timer asked for with a log level above the
``--timing-log-level`` is a no-op stand-in, so the training loop can time everything unconditionally.

Each start/stop waits for queued device work (``megatron.core.device.synchronize``), so times are
wall-clock times of the work, on CUDA as on CPU.
"""
import time
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

from megatron.core import device

LOG_OPTIONS = ("max", "minmax", "all")
MAX_LOG_LEVEL = 2

# The clock every timer reads (monotonic, sub-microsecond); one name so tests can drive it.
_clock = time.perf_counter


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class Timer:
    """Accumulates elapsed seconds over start/stop pairs until reset."""

    def __init__(self, name: str):
        self.name = name
        self._elapsed = 0.0
        self._active_time = 0.0  # total over the whole run; reset() leaves it alone
        self._started = False
        self._start_time = _clock()
        self._barrier_group = None  # None: the default (world) group

    def set_barrier_group(self, barrier_group) -> None:
        self._barrier_group = barrier_group

    def _barrier(self) -> None:
        if _distributed():
            dist.barrier(group=self._barrier_group)

    def start(self, barrier: bool = False) -> None:
        if self._started:
            raise RuntimeError(f"timer {self.name!r} has already been started: stop it before starting it again")
        if barrier:
            self._barrier()
        device.synchronize()
        self._start_time = _clock()
        self._started = True

    def stop(self, barrier: bool = False) -> None:
        if not self._started:
            raise RuntimeError(f"timer {self.name!r} is not started: start it before stopping it")
        if barrier:
            self._barrier()
        device.synchronize()
        elapsed = _clock() - self._start_time
        self._elapsed += elapsed
        self._active_time += elapsed
        self._started = False

    def reset(self) -> None:
        self._elapsed = 0.0
        self._started = False

    def elapsed(self, reset: bool = True, barrier: bool = False) -> float:
        """Seconds accumulated so far (a running timer is counted up to now and keeps running)."""
        running = self._started
        if running:
            self.stop(barrier=barrier)
        value = self._elapsed
        if reset:
            self.reset()
        if running:
            self.start(barrier=barrier)
        return value

    def active_time(self) -> float:
        """Seconds this timer has run in total, across resets."""
        return self._active_time


class DummyTimer(Timer):
    """Stands in for timers above the configured log level: starting and stopping do nothing."""

    def __init__(self):
        super().__init__("dummy timer")

    def start(self, barrier: bool = False) -> None:
        return

    def stop(self, barrier: bool = False) -> None:
        return

    def reset(self) -> None:
        return

    def elapsed(self, reset: bool = True, barrier: bool = False) -> float:
        raise RuntimeError(
            "a timer above --timing-log-level was read: raise --timing-log-level or ask for this "
            "timer with a lower log_level"
        )

    def active_time(self) -> float:
        return self.elapsed()


class Timers:
    """The group of named timers of one process."""

    def __init__(self, log_level: int, log_option: str):
        if log_option not in LOG_OPTIONS:
            raise ValueError(f"--timing-log-option must be one of {LOG_OPTIONS}, got {log_option!r}")
        if not 0 <= log_level <= MAX_LOG_LEVEL:
            raise ValueError(f"--timing-log-level must be 0, 1 or 2, got {log_level}")
        self._log_level = log_level
        self._log_option = log_option
        self._timers: Dict[str, Timer] = {}
        self._log_levels: Dict[str, int] = {}
        self._dummy_timer = DummyTimer()

    def __call__(self, name: str, log_level: Optional[int] = None) -> Timer:
        if name in self._timers:
            if log_level is not None and log_level != self._log_levels[name]:
                raise ValueError(
                    f"timer {name!r} was created with log level {self._log_levels[name]}, now asked for "
                    f"with {log_level}"
                )
            return self._timers[name]
        if log_level is None:
            log_level = MAX_LOG_LEVEL
        if log_level > MAX_LOG_LEVEL:
            raise ValueError(f"timer log level {log_level} is above the largest supported level {MAX_LOG_LEVEL}")
        if log_level > self._log_level:
            return self._dummy_timer
        self._timers[name] = Timer(name)
        self._log_levels[name] = log_level
        return self._timers[name]

    def _elapsed_all_ranks(self, names: List[str], reset: bool, barrier: bool) -> torch.Tensor:
        """[world_size, len(names)] seconds; 0 where a rank has no such timer.

        Every rank must call this with the same names (it is a collective when distributed).
        """
        if barrier and _distributed():
            dist.barrier()
        world_size = dist.get_world_size() if _distributed() else 1
        mine = torch.zeros(len(names), dtype=torch.float, device=device.current_device())
        for i, name in enumerate(names):
            if name in self._timers:
                mine[i] = self._timers[name].elapsed(reset=reset)
        if world_size == 1:
            return mine.unsqueeze(0).cpu()
        # all_gather (not all_gather_into_tensor) so that gloo works as well as NCCL.
        gathered = [torch.zeros_like(mine) for _ in range(world_size)]
        dist.all_gather(gathered, mine)
        return torch.stack(gathered).cpu()

    def _min_max(self, names: List[str], reset: bool, barrier: bool, normalizer: float) -> Dict[str, tuple]:
        """name -> (min, max) over the ranks that have the timer, divided by ``normalizer``."""
        times = self._elapsed_all_ranks(names, reset, barrier)
        result = {}
        for i, name in enumerate(names):
            column = times[:, i]
            column = column[column > 0.0]
            if column.numel() > 0:
                result[name] = (column.min().item() / normalizer, column.max().item() / normalizer)
        return result

    def get_all_timers_string(
        self, names: Optional[List[str]] = None, normalizer: float = 1.0, reset: bool = True, barrier: bool = False
    ) -> Optional[str]:
        """The report block in milliseconds, or None when no named timer has a time."""
        if names is None:
            names = list(self._timers.keys())
        if not normalizer > 0.0:
            raise ValueError(f"timer normalizer must be > 0, got {normalizer}")
        to_ms = normalizer / 1000.0
        if self._log_option == "all":
            times = self._elapsed_all_ranks(names, reset, barrier) / to_ms
            lines = ["times across ranks (ms):"]
            for i, name in enumerate(names):
                ranks = [r for r in range(times.shape[0]) if times[r, i] > 0]
                if ranks:
                    lines.append(f"  {name}:")
                    lines += ["     rank {:2d}: {:.2f}".format(r, times[r, i].item()) for r in ranks]
            return "\n".join(lines) if len(lines) > 1 else None
        min_max = self._min_max(names, reset, barrier, to_ms)
        if not min_max:
            return None
        max_only = self._log_option == "max"
        lines = ["max time across ranks (ms):" if max_only else "(min, max) time across ranks (ms):"]
        for name, (low, high) in min_max.items():
            label = (name + " ").ljust(48, ".")
            lines.append(f"    {label}: {high:.2f}" if max_only else f"    {label}: ({low:.2f}, {high:.2f})")
        return "\n".join(lines)

    def log(
        self,
        names: List[str],
        rank: Optional[int] = None,
        normalizer: float = 1.0,
        reset: bool = True,
        barrier: bool = False,
    ) -> None:
        """Print the report on ``rank`` (default: the last rank, as Megatron does)."""
        text = self.get_all_timers_string(names, normalizer, reset, barrier)
        world_size = dist.get_world_size() if _distributed() else 1
        my_rank = dist.get_rank() if _distributed() else 0
        if rank is None:
            rank = world_size - 1
        if rank == my_rank and text is not None:
            print(text, flush=True)

    def write(
        self,
        names: List[str],
        writer,
        iteration: int,
        normalizer: float = 1.0,
        reset: bool = False,
        barrier: bool = False,
    ) -> None:
        """Write ``<name>-time`` (max over ranks, seconds / normalizer) to a TensorBoard-style writer.

        Collective: every rank calls it; ``writer`` may be None on ranks that do not write. Anything
        with ``add_scalar(tag, value, step)`` works; a W&B-style object with ``log(dict, step)`` too.
        """
        if not normalizer > 0.0:
            raise ValueError(f"timer normalizer must be > 0, got {normalizer}")
        min_max = self._min_max(names, reset, barrier, normalizer)
        if writer is None:
            return
        for name, (_, high) in min_max.items():
            if hasattr(writer, "add_scalar"):
                writer.add_scalar(name + "-time", high, iteration)
            else:
                writer.log({name + "-time": high}, iteration)
