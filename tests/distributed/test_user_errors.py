"""Bad input ends a command with one line that names the flag or file, exit status 2, no traceback:
from the entry script, the generation tool, and every rank of a torchrun launch."""
import os
import re
import subprocess
import sys

import numpy

from tests.harness import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --train-iters 2 --lr 1e-3 --log-interval 1 --eval-iters 0").split()
MOCK = ["--mock-data", "--vocab-size", "8191"]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MEGATRON_DEVICE="cpu")
    env.pop("MEGATRON_TRACEBACK", None)
    env.update(extra)
    return env


def _run(argv, cwd, **env):
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _error_lines(stderr, prog):
    return [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]


def test_bad_flags_and_files_are_one_line_with_status_2(tmp_path):
    script = os.path.join(ROOT, "pretrain_gpt.py")
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    cases = [  # (extra flags, what the message must name)
        (["--lr", "-0.1"], "--lr"),
        (["--train-iters", "0"], "--train-iters"),
        (["--save", str(a_file)], "--save"),
    ]
    for extra, named in cases:
        rc, out, err = _run([script, *TINY, *MOCK, *extra], tmp_path)  # a repeated flag: the last wins
        lines = _error_lines(err, "pretrain_gpt.py")
        assert rc == 2, (extra, rc, err[-2000:])
        assert len(lines) == 1 and named in lines[0], (extra, err[-2000:])
        assert "Traceback" not in err, (extra, err[-2000:])
    # MEGATRON_TRACEBACK=1 shows where it came from.
    rc, out, err = _run([script, *TINY, *MOCK, "--lr", "-0.1"], tmp_path, MEGATRON_TRACEBACK="1")
    assert rc != 0 and "Traceback" in err and "ConfigError" in err


def test_generation_refuses_bad_values_and_a_damaged_checkpoint(tmp_path):
    generate = os.path.join(ROOT, "tools", "generate_text.py")
    rc, _, err = _run([generate, "--prompt", "x"], tmp_path)
    assert rc == 2 and "--load" in _error_lines(err, "generate_text.py")[0] and "Traceback" not in err
    ckpt = tmp_path / "ckpt"
    rc, _, err = _run([os.path.join(ROOT, "pretrain_gpt.py"), *TINY, *MOCK, "--save", str(ckpt)], tmp_path)
    assert rc == 0, err[-3000:]
    rc, _, err = _run([generate, "--load", str(ckpt), "--max-new-tokens", "0"], tmp_path)
    assert rc == 2 and "--max-new-tokens" in _error_lines(err, "generate_text.py")[0], err[-2000:]
    weights = ckpt / "iter_0000002" / "mp_rank_00" / "model_optim_rng.pt"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a full disk
    rc, _, err = _run([generate, "--load", str(ckpt)], tmp_path)
    lines = _error_lines(err, "generate_text.py")
    assert rc == 2 and len(lines) == 1 and "model_optim_rng.pt" in lines[0] and "--ckpt-step" in lines[0], err[-2000:]
    assert "Traceback" not in err


def _dataset_with_ids_beyond(prefix, vocab_size):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=numpy.int32)
    rng = numpy.random.default_rng(0)
    for _ in range(64):
        builder.add_document(rng.integers(0, vocab_size, 40).astype(numpy.int32), [40])
    builder.add_document(numpy.array([vocab_size + 7] * 40, dtype=numpy.int32), [40])
    builder.finalize(prefix + ".idx")


def test_an_error_on_the_data_reading_rank_stops_every_rank_with_one_message(tmp_path):
    """Under TP=2 only tensor-parallel rank 0 reads the data: rank 1 must not hang or print a traceback."""
    prefix = str(tmp_path / "bad")
    _dataset_with_ids_beyond(prefix, 500)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           os.path.join(ROOT, "pretrain_gpt.py"), *TINY, "--tensor-model-parallel-size", "2",
           "--tokenizer-type", "NullTokenizer", "--vocab-size", "500", "--data-path", prefix, "--split", "90,10,0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    ours = _error_lines(proc.stderr, "pretrain_gpt.py")
    assert proc.returncode != 0
    assert len(ours) == 1 and prefix in ours[0] and str(500 + 7) in ours[0], proc.stderr[-4000:]
    # torchrun prints its own summary (with our line as each rank's cause); no frame of ours appears.
    assert not re.search(r'File ".*megatron/', proc.stderr), proc.stderr[-4000:]
