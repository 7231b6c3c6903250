"""Dataset start-up benchmark: build the GPTDataset indices of 1B tokens, whole process and indices.

    python tools/bench_dataset_startup.py [--documents 1000000] [--seq-length 2048] [--repeats 3]
                                          [--peer-python /path/to/megatron-core-venv/bin/python]

Writes (once) a 1M-document, ~1B-token indexed dataset under --data-dir: a real .idx and a sparse
.bin of the right size (index building never reads token bytes). Then, in fresh processes, builds
the train GPTDataset (one epoch, seed 1234) through BlendedMegatronDatasetBuilder:

* cold: no index cache yet: the indices are computed (and written to a new cache directory);
* warm: the same again, now loading the cache.

Each prints one JSON line: whole-process wall time (interpreter start to exit), the time of the
build call alone ("indices_s"), and the import time. With --peer-python, the same child script
runs under that interpreter (a venv with megatron-core from PyPI): the script only uses the
Megatron Core API, so both packages run identical code paths. Medians of --repeats runs.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy

# One child script for both packages: only Megatron Core's public API.
CHILD = r"""
import json, sys, time
t0 = time.time()
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
t1 = time.time()

class Tokenizer:
    eod = 0
    unique_identifiers = {"class": "BenchTokenizer"}

prefix, cache, seq_length = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = GPTDatasetConfig(
    random_seed=1234, sequence_length=seq_length, blend=[[prefix], None], split="100,0,0",
    path_to_cache=cache, reset_position_ids=False, reset_attention_mask=False,
    eod_mask_loss=False, tokenizer=Tokenizer(),
)
builder = BlendedMegatronDatasetBuilder(GPTDataset, [None, None, None], lambda: True, config)
train, _, _ = builder.build()
t2 = time.time()
print(json.dumps({"import_s": t1 - t0, "indices_s": t2 - t1, "samples": len(train),
                  "torch_imported": "torch" in sys.modules}))
"""


def write_dataset(prefix: str, documents: int, seed: int = 0) -> int:
    """A uint16 dataset of `documents` one-sequence documents (lengths 1..1999, ~1B tokens)."""
    lengths = numpy.random.default_rng(seed).integers(1, 2000, size=documents, dtype=numpy.int32)
    pointers = numpy.zeros(documents, dtype=numpy.int64)
    numpy.cumsum(lengths[:-1], dtype=numpy.int64, out=pointers[1:])
    pointers *= 2
    document_indices = numpy.arange(documents + 1, dtype=numpy.int64)
    tmp = prefix + ".idx.tmp"
    with open(tmp, "wb") as out:
        # MMIDIDX header: magic, version 1, dtype code 8 (uint16), sequence and document counts.
        out.write(struct.pack("<9sQBQQ", b"MMIDIDX\x00\x00", 1, 8, documents, documents + 1))
        out.write(lengths.tobytes())
        out.write(pointers.tobytes())
        out.write(document_indices.tobytes())
    with open(prefix + ".bin", "wb") as out:
        out.truncate(int(lengths.sum(dtype=numpy.int64)) * 2)  # sparse: no disk used
    os.replace(tmp, prefix + ".idx")
    return int(lengths.sum(dtype=numpy.int64))


def run_child(python: str, prefix: str, cache: str, seq_length: int) -> dict:
    start = time.time()
    done = subprocess.run(
        [python, "-c", CHILD, prefix, cache, str(seq_length)],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    wall = time.time() - start
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def measure(label: str, python: str, prefix: str, seq_length: int, repeats: int) -> None:
    runs = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
            runs["cold"].append(run_child(python, prefix, cache, seq_length))
            runs["warm"].append(run_child(python, prefix, cache, seq_length))
    for phase, results in runs.items():
        line = {
            "peer": label,
            "phase": phase,
            "samples": results[0]["samples"],
            "torch_imported": results[0]["torch_imported"],
        }
        for key in ("process_s", "indices_s", "import_s"):
            line[key] = round(statistics.median(r[key] for r in results), 3)
        print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--seq-length", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--data-dir", default=os.path.join(tempfile.gettempdir(), "megatron-bench-data")
    )
    parser.add_argument("--peer-python", help="interpreter of a venv with megatron-core from PyPI")
    args = parser.parse_args()

    os.makedirs(args.data_dir, exist_ok=True)
    prefix = os.path.join(args.data_dir, f"bench_{args.documents}_text_document")
    if not (os.path.exists(prefix + ".idx") and os.path.exists(prefix + ".bin")):
        tokens = write_dataset(prefix, args.documents)
        print(f"wrote {prefix} ({args.documents} documents, {tokens} tokens)", file=sys.stderr)
    measure("ours", sys.executable, prefix, args.seq_length, args.repeats)
    if args.peer_python:
        measure("megatron-core", args.peer_python, prefix, args.seq_length, args.repeats)


if __name__ == "__main__":
    main()
