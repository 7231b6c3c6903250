"""tools/preprocess_data.py and tools/merge_datasets.py on bad input: exit status 2, one line
`<tool>: error: ...` naming the flag or file, no traceback, nothing written. One case of each
kind of error runs the tool as a process (what the user sees); the others call the same main()
in this process (each process start costs seconds here). Also --allow-empty, Ctrl-C (130), and
the removal of a dead run's temporary files."""

import json
import os
import struct
import subprocess
import sys
import time

import pytest

from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.temp_files import pid_is_running, this_host

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BYTE = ["--tokenizer-type", "ByteTokenizer", "--workers", "1"]


def run_tool(name, *argv, cwd=None):
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{name}.py"), *argv],
                          capture_output=True, text=True, cwd=cwd, timeout=300)
    return done.returncode, done.stdout, done.stderr


def main_in_process(module, argv, capsys):
    """(status, stdout, stderr) of `module.main(argv)`, which returns the status a process exits with."""
    capsys.readouterr()
    code = module.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(stderr, tool, *fragments):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{tool}.py: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(line + "\n" for line in lines)


def dead_pid():
    """The pid of a process that ran and was reaped on this host (not reused since)."""
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        if not pid_is_running(child.pid):
            return child.pid
    pytest.skip("could not find a pid that stays dead")


def test_preprocess_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    from megatron.preprocess import cli as preprocess_data

    good = tmp_path / "in.jsonl"
    write_lines(good, [json.dumps({"text": "hello"})])
    out = str(tmp_path / "out" / "ds")
    bad = tmp_path / "bad.jsonl"
    write_lines(bad, [json.dumps({"text": "fine"}), '{"text": "broken"'])
    empty = tmp_path / "empty.jsonl"
    write_lines(empty, ["", "  "])
    # A missing file and content without documents, as processes:
    code, _, err = run_tool("preprocess_data", "--input", str(tmp_path / "missing.jsonl"),
                            "--output-prefix", out, *BYTE)
    assert code == 2
    assert_one_line_error(err, "preprocess_data", "--input", "missing.jsonl does not exist")
    code, _, err = run_tool("preprocess_data", "--input", str(empty), "--output-prefix", out, *BYTE)
    assert code == 2
    assert_one_line_error(err, "preprocess_data", f"--input {empty} holds no document",
                          "--allow-empty")
    cases = [
        (["--input", str(good), "--find-optimal-num-workers"], ["--find-optimal-num-workers"]),
        (["--input", str(good), "--keep-newlines"], ["--keep-newlines"]),
        (["--input", str(good), "--partitions", "2"], ["--workers 1 is not divisible by --partitions 2"]),
        (["--input", str(bad)], [f"{bad}:2: invalid JSON", "--skip-bad-lines"]),
        (["--input", str(good), "--chunk-bytes", "0"], ["--chunk-bytes must be at least 1"]),
    ]
    for argv, fragments in cases:
        code, _, err = main_in_process(preprocess_data, argv + ["--output-prefix", out, *BYTE], capsys)
        assert code == 2, (argv, err)
        assert_one_line_error(err, "preprocess_data", *fragments)
    assert os.listdir(tmp_path / "out") == []


def test_allow_empty_writes_a_valid_empty_dataset(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, out, err = run_tool("preprocess_data", "--input", str(empty), "--output-prefix",
                              str(tmp_path / "ds"), "--allow-empty", *BYTE)
    assert code == 0, err
    dataset = IndexedDataset(str(tmp_path / "ds_text_document"))
    assert len(dataset) == 0 and dataset.document_indices.tolist() == [0]
    assert os.path.getsize(tmp_path / "ds_text_document.bin") == 0
    assert "Done: 0 documents" in out


def test_ctrl_c_exits_130(monkeypatch, capsys):
    from megatron.preprocess import cli as preprocess_data, pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "preprocess", interrupted)
    assert preprocess_data.main(["--input", "x.jsonl", "--output-prefix", "y", *BYTE]) == 130
    assert "preprocess_data.py: interrupted" in capsys.readouterr().err


def _make_dataset(tmp_path, name, texts):
    from megatron.core.tokenizers import build_tokenizer
    from megatron.preprocess import PreprocessConfig, preprocess

    source = tmp_path / f"{name}.jsonl"
    write_lines(source, [json.dumps({"text": t}) for t in texts])
    config = PreprocessConfig(str(source), str(tmp_path / "shards" / name), append_eod=True)
    preprocess(config, lambda: build_tokenizer("ByteTokenizer"), log=lambda message: None)
    return str(tmp_path / "shards" / f"{name}_text_document")


def test_merge_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    from megatron.preprocess import merge_cli as merge_datasets

    first = _make_dataset(tmp_path, "a", ["one", "two"])
    second = _make_dataset(tmp_path, "b", ["three", "four", "five"])
    out = str(tmp_path / "merged")
    shards = ["--input", str(tmp_path / "shards")]
    code, stdout, err = main_in_process(merge_datasets, shards + ["--output-prefix", out], capsys)
    assert code == 0 and "Merged 2 datasets" in stdout, err

    # A damaged pointer in one input: named by file and sequence, nothing written.
    idx = second + ".idx"
    with open(idx, "r+b") as stream:
        stream.seek(34 + 4 * 3 + 8 * 2)  # pointer of sequence 2
        stream.write(struct.pack("<q", 999))
    code, _, err = run_tool("merge_datasets", *shards, "--output-prefix", out + "2")
    assert code == 2
    assert_one_line_error(err, "merge_datasets", idx, "sequence 2 starts at byte 999",
                          "re-run tools/preprocess_data.py")
    assert not os.path.exists(out + "2.bin")

    os.remove(first + ".idx")
    code, _, err = main_in_process(merge_datasets, shards + ["--output-prefix", out + "3"], capsys)
    assert code == 2
    assert_one_line_error(err, "merge_datasets", "a_text_document.idx")
    code, _, err = main_in_process(
        merge_datasets, ["--input", str(tmp_path / "nowhere"), "--output-prefix", out + "4"], capsys)
    assert code == 2
    assert_one_line_error(err, "merge_datasets", "--input", "nowhere is not a folder")
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "b.jsonl", "merged.bin", "merged.idx", "shards"]


def test_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    write_lines(source, [json.dumps({"text": "hello"})])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    host, dead = this_host(), dead_pid()
    alive = os.getppid()  # the process that started the tests: alive for the whole run
    names = {
        f"ds_text_document.bin.tmp-{host}-{dead}": False,  # ours, writer dead: removed
        f"ds_text_document.idx.tmp-{host}-{dead}": False,
        f"ds_text_document.bin.tmp-{host}-{alive}": True,  # writer alive: kept
        f"ds_text_document.bin.tmp-other-host.example-{dead}": True,  # another host: kept
        f"notes.tmp-{host}-{dead}": True,  # not one of our file kinds: kept
        "ds_text_document.bin.tmp-12345": True,  # the old name without a host: not ours to judge
    }
    old = time.time() - 3600  # left an hour ago
    for name in names:
        (out_dir / name).write_bytes(b"partial")
        os.utime(out_dir / name, (old, old))
    fresh = out_dir / f"other_text_document.bin.tmp-{host}-{dead}"
    fresh.write_bytes(b"just written")  # may be a writer in another pid namespace: kept
    from megatron.preprocess import cli as preprocess_data

    code, _, err = main_in_process(
        preprocess_data, ["--input", str(source), "--output-prefix", str(out_dir / "ds"), *BYTE], capsys)
    assert code == 0, err
    for name, kept in names.items():
        assert os.path.exists(out_dir / name) == kept, name
    assert fresh.exists()
    assert "Removed 2 temporary file(s)" in err
    assert IndexedDataset(str(out_dir / "ds_text_document"))[0].tolist()[:5] == list(b"hello")


def test_index_cache_temporaries_of_dead_processes_are_removed(tmp_path):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset
    from megatron.core import temp_files
    from tests.dataset_helpers import gpt_config, write_documents

    prefix = write_documents(str(tmp_path / "data"), [29] * 20)
    cache = tmp_path / "cache"
    cache.mkdir()
    host, dead = this_host(), dead_pid()
    stale = cache / f".x-GPTDataset-train-sample_index.npy.0a1b2c3d.tmp-{host}-{dead}"
    live = cache / f".x-GPTDataset-train-sample_index.npy.0a1b2c3d.tmp-{host}-{os.getppid()}"
    for path in (stale, live):
        path.write_bytes(b"half")
        os.utime(path, (time.time() - 3600,) * 2)
    temp_files._swept.clear()

    config = gpt_config(([prefix], None), path_to_cache=str(cache))
    BlendedMegatronDatasetBuilder(GPTDataset, [10, None, None], lambda: True, config).build()
    assert not stale.exists()
    assert live.exists()
