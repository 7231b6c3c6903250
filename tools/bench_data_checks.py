#!/usr/bin/env python
"""Cost of the data checks done at start: the .idx consistency check, the lengths hash of the
index-cache fingerprint, and the full token-id scan of a .bin.

    python tools/bench_data_checks.py [--sequences 100000000] [--bin-mb 1024] [--dir /tmp] [--repeats 3]

Writes (under --dir, deleted afterwards) a --sequences .idx with a sparse .bin (the .idx checks
never read tokens), and a --bin-mb dataset of random uint16 tokens. Prints one JSON line per
measurement (median of --repeats; the .idx in page cache as after it is written; the token scan
both in page cache and after dropping the file's pages).
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import tempfile
import time

import numpy

from megatron.core.datasets import fingerprint, index_validation, token_range
from megatron.core.datasets.indexed_dataset import _IndexReader


def write_index(prefix: str, lengths: numpy.ndarray, itemsize: int, code: int, sparse: bool) -> None:
    count = len(lengths)
    with open(prefix + ".idx", "wb") as out:
        out.write(struct.pack("<9sQBQQ", b"MMIDIDX\x00\x00", 1, code, count, count + 1))
        out.write(lengths.tobytes())
        step = 1 << 24
        carry = 0
        for begin in range(0, count, step):  # pointers in chunks: bounded memory
            chunk = lengths[begin:begin + step].astype(numpy.int64)
            pointers = numpy.cumsum(chunk) - chunk + carry
            carry = int(pointers[-1] + chunk[-1])
            out.write((pointers * itemsize).tobytes())
        for begin in range(0, count + 1, step):
            out.write(numpy.arange(begin, min(begin + step, count + 1), dtype=numpy.int64).tobytes())
    if sparse:
        with open(prefix + ".bin", "wb") as out:
            out.truncate(int(lengths.sum(dtype=numpy.int64)) * itemsize)


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=100_000_000)
    parser.add_argument("--bin-mb", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-data-checks-", dir=args.dir)
    try:
        rng = numpy.random.default_rng(0)
        prefix = os.path.join(work, "index")
        lengths = rng.integers(1, 2000, size=args.sequences, dtype=numpy.int32)
        write_index(prefix, lengths, 2, 8, sparse=True)
        del lengths
        reader = _IndexReader(prefix + ".idx", multimodal=False, validate=False)
        seconds = timed(lambda: (
            index_validation.check_lengths_and_pointers(prefix + ".idx", reader.sequence_lengths,
                                                        reader.sequence_pointers, 2),
            index_validation.check_document_indices(prefix + ".idx", reader.document_indices,
                                                    reader.sequence_count)), args.repeats)
        print(json.dumps({"check": "idx consistency", "sequences": args.sequences,
                          "idx_mb": round(os.path.getsize(prefix + ".idx") / 2**20), "seconds": round(seconds, 3)}))
        seconds = timed(lambda: fingerprint.hash_lengths(reader.sequence_lengths), args.repeats)
        print(json.dumps({"check": "lengths hash (cache fingerprint)", "sequences": args.sequences,
                          "seconds": round(seconds, 3)}))
        del reader
        for suffix in (".idx", ".bin"):
            os.remove(prefix + suffix)

        tokens_prefix = os.path.join(work, "tokens")
        count = args.bin_mb * 2**20 // 2
        with open(tokens_prefix + ".bin", "wb") as out:
            for begin in range(0, count, 1 << 26):
                out.write(rng.integers(0, 50257, size=min(1 << 26, count - begin), dtype=numpy.uint16).tobytes())
        megabytes = os.path.getsize(tokens_prefix + ".bin") / 2**20
        seconds = timed(lambda: token_range.scan(tokens_prefix + ".bin", numpy.uint16), args.repeats)
        print(json.dumps({"check": "token-id scan, in page cache", "bin_mb": round(megabytes),
                          "seconds": round(seconds, 3), "mb_per_s": round(megabytes / seconds)}))

        def from_disk():
            # Drop this file's pages from the page cache (only this file's), then scan.
            with open(tokens_prefix + ".bin", "rb") as stream:
                os.fsync(stream.fileno())
                os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            token_range.scan(tokens_prefix + ".bin", numpy.uint16)

        seconds = timed(from_disk, args.repeats)
        print(json.dumps({"check": "token-id scan, from disk", "bin_mb": round(megabytes),
                          "seconds": round(seconds, 3), "mb_per_s": round(megabytes / seconds)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
