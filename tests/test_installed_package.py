"""`pip install .` (a wheel, not the editable checkout) gives working commands, run outside the clone."""
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_wheel_install_gives_working_console_scripts(tmp_path):
    import shutil
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "runs", "tests", "*.egg-info",
                                                                "__pycache__"))
    wheels = tmp_path / "wheels"
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
            str(source)])
    wheel = next(wheels.glob("megatron_lite-*.whl"))
    # The test machine's packages (torch, tokenizers, ...) are visible; megatron itself comes from the wheel.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    _check([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    away = tmp_path / "elsewhere"  # no checkout here: only the installed package can answer
    away.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", MEGATRON_DEVICE="cpu", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    where = _check([str(python), "-c", "import megatron; print(megatron.__file__)"], cwd=away, env=env)
    assert str(env_dir) in where, where
    log = _check([str(bin_dir / "megatron-pretrain-gpt"), "--mock-data", "--vocab-size", "8191", "--num-layers", "1",
                  "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "32",
                  "--max-position-embeddings", "32", "--micro-batch-size", "2", "--train-iters", "2", "--lr", "1e-3",
                  "--log-interval", "1", "--eval-iters", "0", "--save", str(away / "ckpt")], cwd=away, env=env)
    assert "iteration        2/       2" in log, log[-2000:]
    generated = _check([str(bin_dir / "megatron-generate"), "--load", str(away / "ckpt"), "--max-new-tokens", "3"],
                       cwd=away, env=env)
    assert "successfully loaded checkpoint" in generated
    for script in ("megatron-quickstart", "megatron-preprocess-data", "megatron-merge-datasets", "megatron-corpus",
                   "megatron-train-tokenizer", "megatron-benchmark"):
        assert "usage" in _check([str(bin_dir / script), "--help"], cwd=away, env=env).lower(), script


def test_import_is_refused_beside_megatron_core(tmp_path):
    """NVIDIA's megatron-core wheel writes into the same megatron/ folder: refuse, with a message."""
    import shutil
    site_dir = tmp_path / "site"
    shutil.copytree(os.path.join(ROOT, "megatron"), site_dir / "megatron",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(site_dir))
    probe = [sys.executable, "-c", "import megatron, os; print(os.path.dirname(megatron.__file__))"]
    assert str(site_dir) in _check(probe, cwd=tmp_path, env=env)  # our copy, not the checkout
    (site_dir / "megatron_core-0.16.1.dist-info").mkdir()
    proc = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "megatron-core are installed in one environment" in proc.stderr
