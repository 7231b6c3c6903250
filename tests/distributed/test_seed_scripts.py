"""What users type today (shared/seeds): a Megatron-LM launch script through the deprecated
launcher, and the Megatron Core quick-start loop, both on CPU ranks."""
import os
import re
import subprocess
import sys

from tests.harness import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# seeds/001: GPT_ARGS / DATA_ARGS / OUTPUT_ARGS, scaled down in sizes; --pipeline-model-parallel-size 1
# and --mock-data in place of the data flags (--data-path, --vocab-file, --merge-file, --split).
GPT_ARGS = """--tensor-model-parallel-size 4 --pipeline-model-parallel-size 1 --num-layers 2 --hidden-size 64
    --num-attention-heads 4 --seq-length 64 --max-position-embeddings 64 --micro-batch-size 2
    --global-batch-size 8 --lr 0.00015 --train-iters 4 --lr-decay-iters 320000 --lr-decay-style cosine
    --min-lr 1.0e-5 --weight-decay 1e-2 --lr-warmup-fraction .01 --clip-grad 1.0 --fp16""".split()
DATA_ARGS = "--mock-data --vocab-size 8191".split()


def _output_args(tmp_path):
    return (f"--log-interval 1 --save-interval 10000 --eval-interval 2 --eval-iters 1 --save {tmp_path}/ckpt "
            f"--load {tmp_path}/ckpt --tensorboard-dir {tmp_path}/tb --log-timers-to-tensorboard").split()


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("MEGATRON_DEVICE", None)  # let the entry script choose, as on a user's machine
    return env


def _launch(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "4", "--nnodes", "1",
           "--node_rank", "0", "--master_addr", "localhost", "--master_port", str(free_port()),
           os.path.join(ROOT, "pretrain_gpt.py"), *GPT_ARGS, *DATA_ARGS, *_output_args(tmp_path),
           "--distributed-backend", "nccl"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    return proc, proc.stdout + proc.stderr


def test_seed_launch_script_trains_through_deprecated_launcher(tmp_path):
    proc, log = _launch(tmp_path)
    if proc.returncode != 0 and "address already in use" in log.lower():
        proc, log = _launch(tmp_path)  # the free port was taken between choosing and binding it
    assert proc.returncode == 0, log[-4000:]
    assert len(re.findall(r"iteration\s+\d+/\s+4 \|", log)) == 4
    assert "falling back to gloo" in log
    assert "validation loss at iteration 2" in log
    assert open(tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read().strip() == "4"
    assert (tmp_path / "ckpt" / "iter_0000004" / "mp_rank_03" / "model_optim_rng.pt").is_file()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))


def test_megatron_core_quickstart_loop_on_two_ranks(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           os.path.join(ROOT, "examples", "run_simple_mcore_train_loop.py")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    losses = [float(x) for x in re.findall(r"'lm loss': tensor\(([0-9.]+)", log)]
    assert len(losses) == 10  # 5 iterations x 2 ranks
    assert losses[8] < losses[0]
