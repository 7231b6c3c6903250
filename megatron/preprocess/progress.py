"""Progress lines for preprocessing: Megatron's docs/s and MB/s line, plus a bar and an ETA."""

import sys
import time

from megatron.core.datasets.progress import format_duration  # noqa: F401 (also ours to export)


def progress_bar(fraction: float, width: int = 24) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * fraction:5.1f}%"


class ProgressReporter:
    """Prints a line each time the document count passes a multiple of `log_interval`, and at
    least every `every_seconds` while documents are written (a large file of long documents
    would otherwise stay silent for minutes).

    The line starts as Megatron's ("Processed N documents (X docs/s, Y MB/s).") so scripts that
    watch for it keep working; the bar and ETA follow. MB are 2**20 bytes of input text, as
    Megatron counts them. The fraction done is measured in input file bytes (compressed bytes
    for .gz), which is what is known in advance.
    """

    def __init__(self, log_interval: int, stream=None, every_seconds: float = 10.0):
        if log_interval < 1:
            raise ValueError(f"--log-interval must be at least 1, got {log_interval}")
        self.log_interval = log_interval
        self.every_seconds = every_seconds
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self._last_bucket = 0
        self._last_line = self.start

    def update(self, documents: int, input_bytes: int, fraction_done: float) -> None:
        bucket = documents // self.log_interval
        now = time.perf_counter()
        if bucket == self._last_bucket and now - self._last_line < self.every_seconds:
            return
        self._last_bucket = bucket
        self._last_line = now
        elapsed = max(now - self.start, 1e-9)
        line = (
            f"Processed {documents} documents ({documents / elapsed:.1f} docs/s, "
            f"{input_bytes / elapsed / 2**20:.2f} MB/s). {progress_bar(fraction_done)}"
        )
        if 0 < fraction_done < 1:
            line += f" ETA {format_duration(elapsed * (1 - fraction_done) / fraction_done)}"
        print(line, file=self.stream, flush=True)
