"""Measure tools/preprocess_data.py: MB/s and tokens/s of the whole process, imports included.

    python tools/corpus.py --output stdlib100.jsonl --max-mb 100 --repeat 4
    python tools/bench_preprocess.py --input stdlib100.jsonl --workers 1 2 --repeats 3 -- \
        --tokenizer-type GPT2BPETokenizer --vocab-file bpe/vocab.json --merge-file bpe/merges.txt

Everything after `--` goes to the preprocessing command as is (the tokenizer flags). Each run is
a fresh process timed from launch to exit; the median of `--repeats` runs is reported. One JSON
line per worker count goes to stdout, with the output's SHA-256 so runs (and other tools, via
--script/--python, e.g. Megatron-LM's own preprocess_data.py) can be checked for identical bytes.
MB are 10**6 bytes of the input file; `mib_per_s` uses 2**20.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sha256_of(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def token_count(idx_path):
    """Sum of the sequence lengths, read from the .idx (no import of our package: the timed
    command may be another tool)."""
    import numpy

    with open(idx_path, "rb") as f:
        header = f.read(34)
        sequences = int.from_bytes(header[18:26], "little")
        lengths = numpy.frombuffer(f.read(4 * sequences), dtype="<i4")
    return int(lengths.sum(dtype=numpy.int64))


def run_once(args, workers, tokenizer_args, out_dir):
    prefix = os.path.join(out_dir, "bench")
    command = [args.python, args.script, "--input", args.input, "--output-prefix", prefix,
               "--workers", str(workers), "--json-keys", args.json_key, "--log-interval", "1000000000"]
    if not args.no_append_eod:
        command.append("--append-eod")
    command += tokenizer_args
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_preprocess.py: the command failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    dataset = f"{prefix}_{args.json_key}_document"
    files = [dataset + ".bin", dataset + ".idx"]
    return seconds, token_count(files[1]), sha256_of(files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="jsonl file to preprocess")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count (median)")
    parser.add_argument("--json-key", default="text")
    parser.add_argument("--no-append-eod", action="store_true")
    parser.add_argument("--script", default=os.path.join(HERE, "preprocess_data.py"),
                        help="preprocessing script to time (default: ours)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs --script")
    parser.add_argument("--label", default="ours", help="name of the tool in the JSON lines")
    if argv is None:
        argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    tokenizer_args = argv[split + 1 :]
    if not os.path.isfile(args.input):
        sys.exit(f"bench_preprocess.py: --input {args.input} does not exist")
    input_bytes = os.path.getsize(args.input)

    hashes = set()
    for workers in args.workers:
        times, tokens, digest = [], None, None
        for _ in range(args.repeats):
            out_dir = tempfile.mkdtemp(prefix="bench_preprocess_")
            try:
                seconds, tokens, digest = run_once(args, workers, tokenizer_args, out_dir)
            finally:
                shutil.rmtree(out_dir, ignore_errors=True)
            times.append(seconds)
            hashes.add(digest)
            print(f"  {args.label} workers={workers}: {seconds:.2f} s", file=sys.stderr, flush=True)
        median = statistics.median(times)
        print(json.dumps({
            "tool": args.label,
            "tokenizer": " ".join(tokenizer_args),
            "workers": workers,
            "input_mb": round(input_bytes / 1e6, 2),
            "wall_s_median": round(median, 3),
            "wall_s_all": [round(t, 3) for t in times],
            "mb_per_s": round(input_bytes / 1e6 / median, 3),
            "mib_per_s": round(input_bytes / 2**20 / median, 3),
            "tokens": tokens,
            "tokens_per_s": round(tokens / median),
            "output_sha256": digest,
        }), flush=True)
    if len(hashes) > 1:
        print("bench_preprocess.py: WARNING: the runs did not all write the same bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
