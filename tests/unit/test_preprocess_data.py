"""tools/preprocess_data.py and tools/merge_datasets.py: order, naming, bad input, atomic output.

The tokenizer is the real ByteTokenizer (UTF-8 bytes, eod 256): expected ids are computable
by hand, so every check below compares against text, not against another run of our code.
"""

import functools
import gzip
import importlib.util
import json
import os

import numpy
import pytest

from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.errors import ConfigError
from megatron.core.tokenizers import build_tokenizer
from megatron.preprocess import PreprocessConfig, PreprocessError, preprocess

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "tools")
EOD = 256
byte_tokenizer = functools.partial(build_tokenizer, "ByteTokenizer")


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_texts(count, seed=0):
    """Documents of varied length (some empty, some non-ASCII); deterministic."""
    rng = numpy.random.RandomState(seed)
    words = ["alpha", "beta", "gamma", "délta", "ε", "zeta.", "Eta!", "theta?"]
    texts = []
    for i in range(count):
        n = 0 if i % 17 == 3 else int(rng.randint(1, 60))
        texts.append(" ".join(words[j] for j in rng.randint(0, len(words), size=n)))
    return texts


def write_jsonl(path, records, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def documents_of(prefix):
    """Each document's tokens, from the dataset's document index."""
    dataset = IndexedDataset(prefix)
    bounds = dataset.document_indices
    return [
        [t for s in range(bounds[d], bounds[d + 1]) for t in dataset[s].tolist()]
        for d in range(len(bounds) - 1)
    ]


def expected_tokens(text, append_eod=True):
    ids = list(text.encode("utf-8"))
    return ids + [EOD] if ids and append_eod else ids


def run(tmp_path, name, **options):
    config = PreprocessConfig(output_prefix=str(tmp_path / name), log_interval=10**9, **options)
    return preprocess(config, byte_tokenizer, log=lambda message: None)


def file_bytes(prefix):
    return {s: open(prefix + s, "rb").read() for s in (".bin", ".idx")}


def test_two_workers_write_exactly_what_one_worker_writes(tmp_path):
    texts = sample_texts(300)
    write_jsonl(tmp_path / "in.jsonl", [{"text": t, "n": i} for i, t in enumerate(texts)])
    one = run(tmp_path, "w1", input=str(tmp_path / "in.jsonl"), append_eod=True, workers=1, chunk_bytes=700)
    two = run(tmp_path, "w2", input=str(tmp_path / "in.jsonl"), append_eod=True, workers=2, chunk_bytes=700)
    assert file_bytes(str(tmp_path / "w1_text_document")) == file_bytes(str(tmp_path / "w2_text_document"))
    assert documents_of(str(tmp_path / "w2_text_document")) == [expected_tokens(t) for t in texts]
    dataset = IndexedDataset(str(tmp_path / "w2_text_document"))
    assert dataset.index.dtype is numpy.uint16  # DType.optimal_dtype(259)
    empty = sum(1 for t in texts if not t)
    assert len(dataset) == len(texts) - empty  # an empty document has no sequence...
    assert len(dataset.document_indices) == len(texts) + 1  # ...but is still a document
    assert one.documents == two.documents == len(texts)
    assert two.tokens == sum(len(expected_tokens(t)) for t in texts)


def test_without_append_eod_documents_run_together(tmp_path):
    texts = sample_texts(20)
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    run(tmp_path, "out", input=str(tmp_path / "in.jsonl"), workers=1)
    assert documents_of(str(tmp_path / "out_text_document")) == [expected_tokens(t, False) for t in texts]


def test_partitions_come_in_megatron_round_robin_order(tmp_path):
    texts = sample_texts(41, seed=1)
    # Two files (one gzip) matched by a glob: lines are dealt across both, in sorted file order.
    write_jsonl(tmp_path / "part_a.jsonl", [{"text": t} for t in texts[:17]])
    write_jsonl(tmp_path / "part_b.jsonl.gz", [{"text": t} for t in texts[17:]], compress=True)
    pattern = str(tmp_path / "part_*")
    for partitions in (2, 3):
        name = f"p{partitions}"
        run(tmp_path, name, input=pattern, append_eod=True, workers=partitions,
            partitions=partitions, chunk_bytes=300)
        dealt = [texts[p::partitions] for p in range(partitions)]  # partition p gets lines p, p+N, ...
        expected = [expected_tokens(t) for part in dealt for t in part]
        assert documents_of(str(tmp_path / f"{name}_text_document")) == expected
    run(tmp_path, "seq", input=pattern, append_eod=True, workers=2, partitions=2,
        keep_sequential_samples=True)
    assert documents_of(str(tmp_path / "seq_text_document")) == [expected_tokens(t) for t in texts]


def test_workers_must_divide_among_partitions(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    with pytest.raises(ConfigError, match="--workers 3 is not divisible by --partitions 2"):
        run(tmp_path, "out", input=str(tmp_path / "in.jsonl"), workers=3, partitions=2)


def test_gzip_input_gives_the_same_dataset(tmp_path):
    records = [{"text": t} for t in sample_texts(50, seed=2)]
    write_jsonl(tmp_path / "in.jsonl", records)
    write_jsonl(tmp_path / "in.jsonl.gz", records, compress=True)
    run(tmp_path, "plain", input=str(tmp_path / "in.jsonl"), append_eod=True, workers=1)
    run(tmp_path, "gz", input=str(tmp_path / "in.jsonl.gz"), append_eod=True, workers=1)
    assert file_bytes(str(tmp_path / "plain_text_document")) == file_bytes(str(tmp_path / "gz_text_document"))


def test_one_output_per_json_key(tmp_path):
    records = [{"text": f"body {i}", "title": f"T{i}" * (i % 3)} for i in range(12)]
    write_jsonl(tmp_path / "in.jsonl", records)
    summary = run(tmp_path, "multi", input=str(tmp_path / "in.jsonl"), json_keys=["text", "title"],
                  append_eod=True, workers=2, chunk_bytes=64)
    for key in ("text", "title"):
        prefix = str(tmp_path / f"multi_{key}_document")
        assert summary.outputs[key] == prefix
        assert documents_of(prefix) == [expected_tokens(r[key]) for r in records]


BAD_LINES = [
    '{"text": "fine one"}',
    '{"text": "broken"',  # line 2: invalid JSON
    '{"body": "no text key"}',  # line 3: missing key
    '',  # line 4: blank, skipped without being an error
    '{"text": 12}',  # line 5: not a string
    '["text"]',  # line 6: not an object
    '{"text": "fine two"}',
]


def test_bad_line_is_fatal_by_default_and_leaves_no_dataset(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", BAD_LINES)
    out_dir = tmp_path / "out"
    with pytest.raises(PreprocessError) as error:
        preprocess(
            PreprocessConfig(str(tmp_path / "in.jsonl"), str(out_dir / "ds"), workers=2, chunk_bytes=40),
            byte_tokenizer, log=lambda m: None,
        )
    assert f"{tmp_path / 'in.jsonl'}:2: invalid JSON" in str(error.value)
    assert "--skip-bad-lines" in str(error.value)
    assert os.listdir(out_dir) == []  # not even temporary files


def test_failed_run_keeps_the_previous_dataset_intact(tmp_path):
    write_jsonl(tmp_path / "good.jsonl", [{"text": "old data"}])
    write_jsonl(tmp_path / "bad.jsonl", BAD_LINES)
    run(tmp_path, "ds", input=str(tmp_path / "good.jsonl"), workers=1)
    before = file_bytes(str(tmp_path / "ds_text_document"))
    with pytest.raises(PreprocessError):
        run(tmp_path, "ds", input=str(tmp_path / "bad.jsonl"), workers=1)
    assert file_bytes(str(tmp_path / "ds_text_document")) == before
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl", "ds_text_document.bin", "ds_text_document.idx", "good.jsonl"]


def test_skip_bad_lines_reports_each_with_file_and_line_and_counts_them(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", BAD_LINES)
    with open(tmp_path / "in.jsonl", "ab") as f:
        f.write(b'{"text": "\xff\xfe"}\n')  # line 8: not UTF-8
    messages = []
    config = PreprocessConfig(str(tmp_path / "in.jsonl"), str(tmp_path / "ds"), append_eod=True,
                              workers=2, skip_bad_lines=True, chunk_bytes=40)
    summary = preprocess(config, byte_tokenizer, log=messages.append)
    assert summary.bad_lines == 5 and summary.blank_lines == 1 and summary.documents == 2
    path = str(tmp_path / "in.jsonl")
    for line, reason in [(2, "invalid JSON"), (3, "missing key 'text'"), (5, "key 'text' is a int"),
                         (6, "a JSON list, expected an object"), (8, "not valid UTF-8")]:
        assert any(f"{path}:{line}: {reason}" in m for m in messages), (line, messages)
    assert documents_of(str(tmp_path / "ds_text_document")) == [
        expected_tokens("fine one"), expected_tokens("fine two")]
    assert "Skipped 5 bad lines" in summary.describe()


def test_cli_names_outputs_like_megatron_and_logs_progress(tmp_path, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in sample_texts(30)])
    tool = load_tool("preprocess_data")
    code = tool.main(["--input", str(tmp_path / "in.jsonl"), "--output-prefix", str(tmp_path / "my-bytes"),
                      "--tokenizer-type", "ByteTokenizer", "--append-eod", "--workers", "2",
                      "--log-interval", "10", "--chunk-bytes", "200"])
    captured = capsys.readouterr()
    assert code == 0
    assert IndexedDataset.exists(str(tmp_path / "my-bytes_text_document"))
    assert "Processed 10 documents" in captured.err or "Processed 1" in captured.err
    assert "docs/s" in captured.err and "MB/s" in captured.err and "%" in captured.err
    assert "Done: 30 documents" in captured.out
    # Bad input: tests/unit/test_data_tool_errors.py runs the tools as processes.


def test_split_sentences_writes_one_sequence_per_sentence(tmp_path):
    pytest.importorskip("nltk")
    texts = ["First sentence here. Second one follows! And a third?", "", "Only one sentence."]
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts * 4])
    summary = run(tmp_path, "bert", input=str(tmp_path / "in.jsonl"), split_sentences=True,
                  append_eod=True, workers=2, chunk_bytes=100)
    prefix = str(tmp_path / "bert_text_sentence")
    assert summary.outputs["text"] == prefix
    dataset = IndexedDataset(prefix)
    assert numpy.diff(dataset.document_indices).tolist()[:3] == [3, 0, 1]
    assert bytes(dataset[1].tolist()) == b"Second one follows!"
    assert dataset[2].tolist() == list(b"And a third?") + [EOD]  # eod ends the document

    write_jsonl(tmp_path / "nl.jsonl", [{"text": "One here.\nTwo there.\n\nThree."}])
    run(tmp_path, "nl", input=str(tmp_path / "nl.jsonl"), split_sentences=True, keep_newlines=True, workers=1)
    kept = IndexedDataset(str(tmp_path / "nl_text_sentence"))
    assert [bytes(s.tolist()) for s in kept[0:len(kept)]] == [b"One here.\n", b"Two there.\n\n", b"Three."]


def test_merge_datasets_concatenates_a_folder_in_name_order(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    texts = sample_texts(30, seed=3)
    for i, part in enumerate([texts[:10], texts[10:25], texts[25:]]):
        write_jsonl(tmp_path / f"s{i}.jsonl", [{"text": t} for t in part])
        run(shards, f"s{i}", input=str(tmp_path / f"s{i}.jsonl"), append_eod=True, workers=1)
    tool = load_tool("merge_datasets")
    assert tool.main(["--input", str(shards), "--output-prefix", str(tmp_path / "merged")]) == 0
    assert documents_of(str(tmp_path / "merged")) == [expected_tokens(t) for t in texts]
    assert "Merged 3 datasets" in capsys.readouterr().out


def test_progress_lines_come_at_least_every_few_seconds_and_for_merges(tmp_path, monkeypatch):
    import io

    from megatron.core.datasets.progress import PhaseProgress
    from megatron.preprocess.merge import merge_datasets
    from megatron.preprocess.progress import ProgressReporter

    # A large file of long documents: fewer than --log-interval documents, still lines.
    stream = io.StringIO()
    reporter = ProgressReporter(10**9, stream=stream, every_seconds=0.0)
    reporter.update(3, 3 * 2**20, 0.25)
    assert stream.getvalue().startswith("Processed 3 documents (")
    quiet = io.StringIO()
    ProgressReporter(10**9, stream=quiet).update(3, 3 * 2**20, 0.25)
    assert quiet.getvalue() == ""

    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        write_jsonl(tmp_path / f"s{i}.jsonl", [{"text": t} for t in sample_texts(5, seed=i)])
        run(shards, f"s{i}", input=str(tmp_path / f"s{i}.jsonl"), workers=1)
    monkeypatch.setattr(PhaseProgress, "delay", 0.0)
    monkeypatch.setattr(PhaseProgress, "interval", 0.0)
    lines = []
    merge_datasets(str(shards), str(tmp_path / "merged"), log=lines.append)
    assert any(line.startswith(f"Merging 3 datasets into {tmp_path / 'merged'}: dataset 2/3 (s1_text_document)")
               for line in lines), lines
    assert lines[-1].startswith(f"Merging 3 datasets into {tmp_path / 'merged'}: done in")
