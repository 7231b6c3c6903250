"""--save is checked at start; a killed save's temporaries are removed, a live writer's never."""
import os
import subprocess
import sys
import time

import pytest

from megatron.core.errors import CheckpointError
from megatron.core.temp_files import remove_dead_temporaries, temporary_path, this_host
from megatron.training.checkpoint_files import check_save_directory, checkpoint_bytes


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid runs no more
    return proc.pid


def test_save_must_be_a_directory_with_room(tmp_path):
    check_save_directory(str(tmp_path / "new" / "ckpt"), 1)  # made when missing
    assert (tmp_path / "new" / "ckpt").is_dir() and os.listdir(tmp_path / "new" / "ckpt") == []  # no probe left
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CheckpointError, match="expected a directory, found a file"):
        check_save_directory(str(a_file), 1)
    with pytest.raises(CheckpointError, match=r"GiB free, but one checkpoint of this model takes about"):
        check_save_directory(str(tmp_path), 2 ** 62)
    # bf16 weights with Adam moments and fp32 master copies: 2 + 8 + 4 bytes a parameter.
    assert checkpoint_bytes(1000, 2, with_optimizer=True, separate_master=True) == 14000


def test_dead_writers_temporaries_are_removed_below_the_save_directory(tmp_path):
    old = time.time() - 3600
    rank_dir = tmp_path / "iter_0000002" / "mp_rank_00"
    rank_dir.mkdir(parents=True)
    dead, host = _dead_pid(), this_host()
    killed_file = rank_dir / f"model_optim_rng.pt.tmp-{host}-{dead}"
    killed_folder = tmp_path / "iter_0000002" / "tokenizer" / f"hf_tok.tmp-{host}-{dead}"
    killed_folder.mkdir(parents=True)
    (killed_folder / "tokenizer.json").write_text("{}")
    live = rank_dir / os.path.basename(temporary_path(str(rank_dir / "other.pt")))  # this process: alive
    young = rank_dir / f"young.pt.tmp-{host}-{dead}"  # dead pid but just written: maybe another container
    foreign = rank_dir / f"notes.pt.tmp-otherhost-{dead}"
    for path in (killed_file, live, young, foreign):
        path.write_text("partial")
    for path in (killed_file, killed_folder, live, foreign):
        os.utime(path, (old, old))
    removed = remove_dead_temporaries(str(tmp_path), log=lambda message: None, recursive=True)
    assert sorted(removed) == sorted([str(killed_file), str(killed_folder)])
    assert live.exists() and young.exists() and foreign.exists() and not killed_folder.exists()
