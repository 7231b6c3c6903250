"""Progress lines for long, otherwise silent dataset phases (index builds, blends, token scans).

    with PhaseProgress("GPTDataset train indices", total=3 * n, unit="ids") as progress:
        ...; progress.advance(n)

prints, on global rank 0 and only once the phase has run `delay` seconds, a line every
`interval` seconds from a background thread:

    GPTDataset train indices: shuffle index, 61.2% (183,600,000 / 300,000,000 ids), elapsed 0:00:12, ETA 0:00:08

then a last line with the total time. Work that numpy does in one call (a shuffle) releases the
GIL, so the thread keeps reporting while it runs; `done` moves when a step completes. Chunked
work reports from `update()` itself; a phase too small to take seconds starts no thread. A phase
that ends before `delay` prints nothing, so small datasets stay quiet.

The lines go to the logger when logging is set up to show INFO for it, else to stderr (a plain
`logging` setup shows only warnings, and a progress line is not one).
"""

import logging
import sys
import threading
import time
from typing import Callable, Optional

from megatron.core.datasets.utils import global_rank

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _emit(line: str) -> None:
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


class PhaseProgress:
    """Reports `done` of `total` units while a phase runs (see the module docstring)."""

    # Seconds before the first line, and between lines. Tests lower them.
    delay = 5.0
    interval = 5.0
    # Below this many units no reporting thread is started (starting one costs milliseconds on a
    # busy machine): such a phase cannot sit seconds inside one numpy call, and its chunked steps
    # still print through update(). 20M ids take well under a second to shuffle.
    thread_min_total = 20_000_000

    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "",
        emit: Optional[Callable[[str], None]] = None,
        rank: Optional[int] = None,
    ) -> None:
        self.what = what
        self.total = max(int(total), 0)
        self.unit = unit
        self.step = ""
        self.done = 0
        self.lines = 0
        self._emit = emit or _emit
        self._active = (global_rank() if rank is None else rank) == 0
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self.start = time.perf_counter()
        self._last_line = None

    def __enter__(self) -> "PhaseProgress":
        self.start = time.perf_counter()
        if self._active and self.total >= self.thread_min_total:
            self._thread = threading.Thread(target=self._run, name="dataset-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lines and kind is None:
            self._emit(f"{self.what}: done in {format_duration(self.elapsed())}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def set_step(self, step: str) -> None:
        self.step = step
        self._maybe_emit()

    def advance(self, units: int) -> None:
        self.update(self.done + int(units))

    def update(self, done: int) -> None:
        self.done = min(self.total, int(done))
        self._maybe_emit()

    def line(self) -> str:
        elapsed = self.elapsed()
        fraction = self.done / self.total if self.total else 0.0
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.what}: " + (f"{self.step}, " if self.step else "")
        text += f"{100 * fraction:.1f}% ({self.done:,} / {self.total:,}{unit}), "
        text += f"elapsed {format_duration(elapsed)}"
        if 0 < fraction < 1:
            text += f", ETA {format_duration(elapsed * (1 - fraction) / fraction)}"
        return text

    def _maybe_emit(self) -> None:
        """A line when the phase has run `delay` s and the last line is `interval` s old; called
        by the steps of chunked work and by the thread (for work done in one numpy call)."""
        if not self._active:
            return
        now = time.perf_counter()
        if now - self.start < self.delay:
            return
        with self._lock:
            if self._last_line is not None and now - self._last_line < self.interval:
                return
            self._last_line = now
            self.lines += 1
            self._emit(self.line())

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while True:
            self._maybe_emit()
            if self._stop.wait(max(self.interval, 0.05)):
                return
