"""How many micro-batches make one global batch, with Megatron Core's module-level API.

num_microbatches = global_batch_size / (micro_batch_size * data_parallel_size)

With ``--rampup-batch-size start increment samples`` the global batch size starts at ``start``
and grows by ``increment`` in equal sample intervals until it reaches ``--global-batch-size``
after ``samples`` consumed samples; the training loop calls ``update_num_microbatches`` with the
consumed-sample count before each step.
"""
import logging
from abc import ABC, abstractmethod
from typing import List, Optional

logger = logging.getLogger(__name__)

_GLOBAL_NUM_MICROBATCHES_CALCULATOR = None


def _calculator():
    if _GLOBAL_NUM_MICROBATCHES_CALCULATOR is None:
        raise RuntimeError(
            "the num-microbatches calculator is not initialised: call "
            "init_num_microbatches_calculator(...) first (initialize_megatron does)"
        )
    return _GLOBAL_NUM_MICROBATCHES_CALCULATOR


def _require_sizes(owner: str, global_batch_size, micro_batch_size, data_parallel_size) -> None:
    missing = [name for name, value in (("global_batch_size", global_batch_size), ("micro_batch_size", micro_batch_size),
                                        ("data_parallel_size", data_parallel_size)) if value is None]
    if missing:
        raise TypeError(f"{owner}() needs {', '.join(missing)}")


def get_num_microbatches() -> int:
    return _calculator().get()


def get_current_global_batch_size() -> int:
    return _calculator().get_current_global_batch_size()


def get_micro_batch_size() -> int:
    return _calculator().get_micro_batch_size()


def get_current_running_global_batch_size() -> int:
    """The batch size actually run: below the current one when ``decrease_batch_size_if_needed``
    had to round it down to a multiple of micro_batch_size * data_parallel_size."""
    return _calculator().get_current_running_global_batch_size()


def update_num_microbatches(consumed_samples: int, consistency_check: bool = True, verbose: bool = False) -> None:
    _calculator().update(consumed_samples, consistency_check, verbose)


def init_num_microbatches_calculator(
    rank: int,
    rampup_batch_size: Optional[List[int]] = None,
    global_batch_size: Optional[int] = None,
    micro_batch_size: Optional[int] = None,
    data_parallel_size: Optional[int] = None,
    decrease_batch_size_if_needed: bool = False,
) -> None:
    """Create the process-wide calculator (once; ``reconfigure_...`` replaces it).

    Megatron Core's positional order; ``rampup_batch_size`` may be left out (no ramp-up), the
    three sizes after it are required."""
    _require_sizes("init_num_microbatches_calculator", global_batch_size, micro_batch_size, data_parallel_size)
    global _GLOBAL_NUM_MICROBATCHES_CALCULATOR
    if _GLOBAL_NUM_MICROBATCHES_CALCULATOR is not None:
        raise RuntimeError(
            "the num-microbatches calculator is already initialised: call "
            "destroy_num_microbatches_calculator() or reconfigure_num_microbatches_calculator()"
        )
    _GLOBAL_NUM_MICROBATCHES_CALCULATOR = build_num_microbatches_calculator(
        rank, rampup_batch_size, global_batch_size, micro_batch_size, data_parallel_size,
        decrease_batch_size_if_needed,
    )


def reconfigure_num_microbatches_calculator(
    rank: int,
    rampup_batch_size: Optional[List[int]] = None,
    global_batch_size: Optional[int] = None,
    micro_batch_size: Optional[int] = None,
    data_parallel_size: Optional[int] = None,
    decrease_batch_size_if_needed: bool = False,
) -> None:
    """Replace the calculator (e.g. evaluation with another micro-batch size)."""
    _require_sizes("reconfigure_num_microbatches_calculator", global_batch_size, micro_batch_size, data_parallel_size)
    global _GLOBAL_NUM_MICROBATCHES_CALCULATOR
    _GLOBAL_NUM_MICROBATCHES_CALCULATOR = build_num_microbatches_calculator(
        rank, rampup_batch_size, global_batch_size, micro_batch_size, data_parallel_size,
        decrease_batch_size_if_needed,
    )


def destroy_num_microbatches_calculator() -> None:
    global _GLOBAL_NUM_MICROBATCHES_CALCULATOR
    _GLOBAL_NUM_MICROBATCHES_CALCULATOR = None


# Megatron Core has both names.
unset_num_microbatches_calculator = destroy_num_microbatches_calculator


def build_num_microbatches_calculator(
    rank: int,
    rampup_batch_size: Optional[List[int]],
    global_batch_size: int,
    micro_batch_size: int,
    data_parallel_size: int,
    decrease_batch_size_if_needed: bool = False,
) -> "NumMicroBatchesCalculator":
    """A calculator object, not installed globally (used for dry runs such as counting iterations)."""
    if rampup_batch_size is None:
        calculator = ConstantNumMicroBatchesCalculator(
            global_batch_size, micro_batch_size, data_parallel_size, decrease_batch_size_if_needed, rank
        )
        if rank == 0:
            logger.info("setting number of microbatches to constant %d", calculator.get())
        return calculator
    if len(rampup_batch_size) != 3:
        raise ValueError(
            "--rampup-batch-size expects three numbers: <start batch size> <batch size increment> "
            f"<ramp-up samples>, got {list(rampup_batch_size)}"
        )
    start, increment, samples = (int(v) for v in rampup_batch_size)
    if rank == 0:
        logger.info(
            "will use batch size rampup starting from global batch size %d to global batch size %d "
            "with batch size increments %d over %d samples.", start, global_batch_size, increment, samples,
        )
    return RampupBatchsizeNumMicroBatchesCalculator(
        global_batch_size, micro_batch_size, data_parallel_size, decrease_batch_size_if_needed, rank,
        start, increment, samples,
    )


def _round_down(batch_size: int, divisor: int) -> int:
    return (batch_size // divisor) * divisor


def _check_sizes(micro_batch_size: int, data_parallel_size: int) -> None:
    if not micro_batch_size > 0:
        raise ValueError(f"--micro-batch-size must be > 0, got {micro_batch_size}")
    if not data_parallel_size > 0:
        raise ValueError(f"data-parallel size must be > 0, got {data_parallel_size}")


class NumMicroBatchesCalculator(ABC):
    def __init__(self) -> None:
        self.num_micro_batches = None
        self.current_global_batch_size = None
        self.micro_batch_size = None
        self.current_running_global_batch_size = None

    def get(self) -> int:
        return self.num_micro_batches

    def get_current_global_batch_size(self) -> int:
        return self.current_global_batch_size

    def get_micro_batch_size(self) -> int:
        return self.micro_batch_size

    def get_current_running_global_batch_size(self) -> int:
        return self.current_running_global_batch_size

    @abstractmethod
    def update(self, consumed_samples: int, consistency_check: bool, verbose: bool = False) -> None:
        ...


class ConstantNumMicroBatchesCalculator(NumMicroBatchesCalculator):
    def __init__(
        self,
        global_batch_size: int,
        micro_batch_size: int,
        data_parallel_size: int,
        decrease_batch_size_if_needed: bool,
        rank: int,
    ) -> None:
        super().__init__()
        _check_sizes(micro_batch_size, data_parallel_size)
        per_step = micro_batch_size * data_parallel_size
        if decrease_batch_size_if_needed:
            running = _round_down(global_batch_size, per_step)
            if rank == 0 and running != global_batch_size:
                logger.info(
                    "decreasing batch size from %d to %d to keep divisibility by micro_batch_size=%d * "
                    "data_parallel_size=%d", global_batch_size, running, micro_batch_size, data_parallel_size,
                )
        else:
            if global_batch_size % per_step != 0:
                raise ValueError(
                    f"--global-batch-size ({global_batch_size}) is not divisible by --micro-batch-size "
                    f"({micro_batch_size}) times data-parallel size ({data_parallel_size}): choose a "
                    f"multiple of {per_step}"
                )
            running = global_batch_size
        self.num_micro_batches = running // per_step
        if self.num_micro_batches < 1:
            raise ValueError(
                f"--global-batch-size ({global_batch_size}) is smaller than --micro-batch-size "
                f"({micro_batch_size}) times data-parallel size ({data_parallel_size}): raise it to at "
                f"least {per_step}"
            )
        self.current_global_batch_size = global_batch_size
        self.current_running_global_batch_size = running
        self.micro_batch_size = micro_batch_size

    def update(self, consumed_samples: int, consistency_check: bool, verbose: bool = False) -> None:
        pass


class RampupBatchsizeNumMicroBatchesCalculator(NumMicroBatchesCalculator):
    """Global batch size start, start+inc, ... up to global_batch_size; each size lasts
    rampup_samples / number_of_increments samples, then the full size holds."""

    def __init__(
        self,
        global_batch_size: int,
        micro_batch_size: int,
        data_parallel_size: int,
        decrease_batch_size_if_needed: bool,
        rank: int,
        start_global_batch_size: int,
        batch_size_increment: int,
        ramup_samples: int,
    ) -> None:
        super().__init__()
        _check_sizes(micro_batch_size, data_parallel_size)
        if not global_batch_size > 0:
            raise ValueError(f"--global-batch-size must be > 0, got {global_batch_size}")
        if not start_global_batch_size > 0:
            raise ValueError(f"--rampup-batch-size start batch size must be > 0, got {start_global_batch_size}")
        if not batch_size_increment > 0:
            raise ValueError(f"--rampup-batch-size batch size increment must be > 0, got {batch_size_increment}")
        if not ramup_samples >= 0:
            raise ValueError(f"--rampup-batch-size ramp-up samples must be >= 0, got {ramup_samples}")
        diff = global_batch_size - start_global_batch_size
        if diff < 0:
            raise ValueError(
                f"--rampup-batch-size start batch size ({start_global_batch_size}) must not exceed "
                f"--global-batch-size ({global_batch_size})"
            )
        if diff % batch_size_increment != 0:
            raise ValueError(
                f"--global-batch-size minus the --rampup-batch-size start ({diff}) must be divisible by "
                f"the --rampup-batch-size increment ({batch_size_increment})"
            )
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.data_parallel_size = data_parallel_size
        self.decrease_batch_size_if_needed = decrease_batch_size_if_needed
        self.rank = rank
        self.start_global_batch_size = start_global_batch_size
        self.batch_size_increment = batch_size_increment
        self.ramup_samples = ramup_samples
        self.micro_batch_times_data_parallel_size = micro_batch_size * data_parallel_size
        num_increments = diff // batch_size_increment
        # Megatron divides by zero when start == global size; then there is nothing to ramp.
        self.rampup_samples_per_increment = ramup_samples / num_increments if num_increments else float("inf")
        self.update(0, consistency_check=False, verbose=True)

    def _batch_size_at(self, consumed_samples: int) -> int:
        if consumed_samples > self.ramup_samples or self.rampup_samples_per_increment == 0:
            return self.global_batch_size
        steps = int(consumed_samples / self.rampup_samples_per_increment)
        return self.start_global_batch_size + steps * self.batch_size_increment

    def update(self, consumed_samples: int, consistency_check: bool, verbose: bool = False) -> None:
        old = self.current_global_batch_size
        self.current_global_batch_size = self._batch_size_at(consumed_samples)
        changed = old != self.current_global_batch_size
        if self.rank == 0 and changed and verbose:
            if old is None:
                logger.info("setting initial batch size to %d", self.current_global_batch_size)
            else:
                logger.info("ramping up batch size from %d to %d", old, self.current_global_batch_size)

        per_step = self.micro_batch_times_data_parallel_size
        divisible = self.current_global_batch_size % per_step == 0
        if consistency_check and not self.decrease_batch_size_if_needed and not divisible:
            raise ValueError(
                f"current global batch size ({self.current_global_batch_size}) of the --rampup-batch-size "
                f"schedule is not divisible by --micro-batch-size ({self.micro_batch_size}) times "
                f"data-parallel size ({self.data_parallel_size}): make the start size and the increment "
                f"multiples of {per_step}"
            )
        if self.decrease_batch_size_if_needed and not divisible:
            self.current_running_global_batch_size = _round_down(self.current_global_batch_size, per_step)
            if self.rank == 0 and changed and verbose:
                logger.info(
                    "decreasing batch size from %d to %d to keep divisibility by micro_batch_size=%d * "
                    "data_parallel_size=%d", self.current_global_batch_size,
                    self.current_running_global_batch_size, self.micro_batch_size, self.data_parallel_size,
                )
        else:
            self.current_running_global_batch_size = self.current_global_batch_size
        self.num_micro_batches = self.current_running_global_batch_size // per_step
