"""Consistency checks of an `.idx` file's arrays, done when a dataset is opened.

An index is consistent when
* every sequence length is >= 0;
* the sequence pointers are the exclusive prefix sums of the lengths times the item size
  (pointer[0] = 0, pointer[i + 1] - pointer[i] = length[i] * itemsize);
* the document index starts at 0, never decreases and ends at the number of sequences;
* the `.bin` file is exactly last pointer + last length * itemsize bytes long.

Megatron-LM's and our writers always produce such files; anything else is damage (a truncated
copy, a hand-made or foreign index) that would otherwise show up much later as wrong samples.
The checks run over the memory-mapped arrays in chunks of a few million entries, so memory stays
bounded (a few MB) whatever the size.
"""

import os
from typing import Optional

import numpy

from megatron.core.errors import DataError

_CHUNK = 1 << 18  # entries per vectorised step: 2 MB temporaries stay in the CPU cache

_REWRITE = "the file is damaged or was not written by a Megatron preprocessing tool: re-run tools/preprocess_data.py to write it again"


def _first(mask: numpy.ndarray) -> int:
    return int(numpy.argmax(mask))


def check_lengths_and_pointers(
    idx_path: str, lengths: numpy.ndarray, pointers: numpy.ndarray, itemsize: int
) -> None:
    """Raise DataError at the first sequence whose length is negative or whose pointer is not
    where the lengths before it put it."""
    count = len(lengths)
    if count == 0:
        return
    if int(pointers[0]) != 0:
        raise DataError(
            f"{idx_path}: sequence 0 starts at byte {int(pointers[0])} of the .bin, expected 0; "
            + _REWRITE
        )
    step = numpy.empty(min(_CHUNK, count), dtype=numpy.int64)
    gap = numpy.empty_like(step)
    for begin in range(0, count, _CHUNK):
        end = min(begin + _CHUNK, count)
        chunk_lengths = lengths[begin:end]
        if int(chunk_lengths.min()) < 0:
            i = begin + _first(chunk_lengths < 0)
            raise DataError(f"{idx_path}: sequence {i} has length {int(lengths[i])}; " + _REWRITE)
        # The pointer of i + 1 minus the pointer of i must be length i in bytes.
        last = min(end, count - 1)
        if last <= begin:
            break
        n = last - begin
        numpy.multiply(lengths[begin:last], itemsize, out=step[:n], dtype=numpy.int64)
        numpy.subtract(pointers[begin + 1 : last + 1], pointers[begin:last], out=gap[:n])
        if not numpy.array_equal(gap[:n], step[:n]):
            i = begin + _first(gap[:n] != step[:n]) + 1
            expected = int(pointers[i - 1]) + int(lengths[i - 1]) * itemsize
            raise DataError(
                f"{idx_path}: sequence {i} starts at byte {int(pointers[i])} of the .bin, but the "
                f"lengths before it put it at byte {expected} (pointer of sequence {i - 1} plus "
                f"{int(lengths[i - 1])} tokens of {itemsize} bytes); " + _REWRITE
            )


def check_document_indices(idx_path: str, document_indices: numpy.ndarray, sequence_count: int) -> None:
    """Raise DataError unless the document index runs from 0 to `sequence_count` without going back."""
    first, last = int(document_indices[0]), int(document_indices[-1])
    if first != 0 or last != sequence_count:
        raise DataError(
            f"{idx_path}: the document index runs from {first} to {last}, expected 0 to the "
            f"{sequence_count} sequences the header announces; " + _REWRITE
        )
    count = len(document_indices)
    for begin in range(0, count - 1, _CHUNK):
        chunk = document_indices[begin : min(begin + _CHUNK + 1, count)]
        backwards = chunk[1:] < chunk[:-1]
        if backwards.any():
            d = begin + _first(backwards) + 1
            raise DataError(
                f"{idx_path}: document {d - 1} ends at sequence {int(document_indices[d])}, before it "
                f"starts (sequence {int(document_indices[d - 1])}): the document index must never "
                "decrease; " + _REWRITE
            )


def check_bin_size(bin_path: str, idx_path: str, expected: int, description: str,
                   actual: Optional[int] = None) -> None:
    """Raise DataError unless `bin_path` is `expected` bytes long."""
    actual = os.path.getsize(bin_path) if actual is None else actual
    if actual != expected:
        raise DataError(
            f"{bin_path} is {actual} bytes but {idx_path} describes {expected} bytes "
            f"({description}): the two files do not belong together or one is truncated; "
            "re-run tools/preprocess_data.py to write the dataset again"
        )
