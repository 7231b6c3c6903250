"""Which input files, in which order, read as large chunks of whole lines.

Megatron's `--partitions N` deals the lines of all input files round-robin into N partition files,
tokenizes each partition, then concatenates the partitions' outputs in partition order. Only that
order matters for the result, so instead of writing partition files we read the inputs N times,
keeping in pass p the lines whose running number (across all files) is p modulo N. The output
is the same, with no intermediate files to go stale. With `--keep-sequential-samples` the
partitions are contiguous runs of lines, whose concatenation is the input order itself.
"""

import glob
import gzip
import os
from dataclasses import dataclass
from typing import Iterator, List

from megatron.core.errors import DataError, MissingFileError

_GLOB_CHARS = set("*?[")


@dataclass
class LineChunk:
    """Consecutive lines (in reading order) of one input file."""

    path: str
    line_numbers: range  # 1-based numbers of `lines` in the file
    lines: List[bytes]  # without their trailing b"\n"


def find_input_files(pattern: str) -> List[str]:
    """`--input` as a file, or else as a glob (sorted, so the order does not depend on the
    directory listing; Megatron used the unsorted listing)."""
    if os.path.isfile(pattern):
        return [pattern]
    matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not matches:
        kind = "matches no file" if _GLOB_CHARS & set(pattern) else "does not exist"
        raise MissingFileError(
            f"--input {pattern} {kind}; give a .jsonl or .jsonl.gz file, or a glob of them"
        )
    return matches


def _open_binary(path: str):
    """(stream to read lines from, raw file whose position measures progress)."""
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise DataError(f"--input {path}: cannot open it ({err.strerror})") from None
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


class ChunkReader:
    """Chunks of about `chunk_bytes` of input lines, in Megatron's partitioned order.

    `consumed_bytes` / `total_bytes` (file bytes, compressed for .gz, over all passes) give the
    progress fraction.
    """

    def __init__(self, files: List[str], partitions: int, keep_sequential: bool, chunk_bytes: int):
        if partitions < 1:
            raise ValueError(f"--partitions must be at least 1, got {partitions}")
        self.files = files
        self.passes = 1 if keep_sequential else partitions
        self.chunk_bytes = max(1, chunk_bytes)
        self.total_bytes = self.passes * sum(os.path.getsize(f) for f in files)
        self.consumed_bytes = 0

    def __iter__(self) -> Iterator[LineChunk]:
        for keep in range(self.passes):
            line_counter = 0  # running line number across files: the dealing order
            for path in self.files:
                for first, lines in self._blocks(path):
                    count = len(lines)
                    if self.passes == 1:
                        yield LineChunk(path, range(first + 1, first + count + 1), lines)
                    else:
                        skip = (keep - (line_counter + first)) % self.passes
                        picked = lines[skip :: self.passes]
                        if picked:
                            numbers = range(first + skip + 1, first + count + 1, self.passes)
                            yield LineChunk(path, numbers, picked)
                line_counter += self._line_count

    def _blocks(self, path: str):
        """(index of the first line, lines) for consecutive blocks of whole lines of `path`."""
        block_bytes = self.chunk_bytes * self.passes
        stream, raw = _open_binary(path)
        counted_before = self.consumed_bytes
        index = 0
        carry = b""
        try:
            while True:
                try:
                    block = stream.read(block_bytes)
                except (OSError, EOFError, gzip.BadGzipFile) as err:
                    raise DataError(f"{path}: cannot read it as {_kind(path)} ({err})") from err
                self.consumed_bytes = counted_before + raw.tell()
                if not block:
                    break
                if carry:
                    block = carry + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    carry = block  # a line longer than the block: keep reading
                    continue
                carry = block[cut + 1 :]
                lines = block[:cut].split(b"\n")
                yield index, lines
                index += len(lines)
            if carry:  # last line without a final newline
                yield index, [carry]
                index += 1
        finally:
            stream.close()
            raw.close()
        self._line_count = index


def _kind(path: str) -> str:
    return "gzip-compressed text" if path.endswith(".gz") else "text"
