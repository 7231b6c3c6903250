"""The README's first command, in its short mode: corpus -> tokenizer -> preprocess -> pretrain -> generate."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_short_mode_runs_end_to_end(tmp_path):
    env = dict(os.environ)
    env.pop("MEGATRON_DEVICE", None)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--short",
                           "--workdir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    losses = [float(x) for x in re.findall(r"lm loss: ([0-9.E+-]+)", log)]
    assert len(losses) >= 10 and losses[-1] < losses[0] - 0.3, losses
    assert (tmp_path / "data" / "stdlib_text_document.bin").is_file()
    assert (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").is_file()
    completion = log.split("5/5 generate")[1]
    assert "def fibonacci(n):" in completion
