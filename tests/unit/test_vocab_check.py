"""The token-id check at training start: every token of every .bin, once, then remembered."""

import os

import numpy as np
import pytest

from megatron.core.datasets import token_range
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.indexed_dataset_builder import IndexedDatasetBuilder
from megatron.core.errors import DataError
from megatron.training.datasets.vocab_check import check_token_ids_fit


def _write(prefix, docs, dtype):
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.asarray(doc, dtype=dtype), [len(doc)])
    builder.finalize(prefix + ".idx")


@pytest.fixture(autouse=True)
def _fresh_memory():
    token_range._IN_MEMORY.clear()


def test_every_token_is_checked_and_the_error_names_prefix_sequence_and_id(tmp_path):
    prefix = str(tmp_path / "data_text_document")
    # One bad id in a sequence a 64-sequence sample would skip (sequence 1000 of 1601).
    docs = [[1, 2, 3]] * 1000 + [[5, 6, 999, 7]] + [[4, 4]] * 600
    _write(prefix, docs, np.int32)
    check_token_ids_fit([prefix], 1000, cache_path=str(tmp_path / "cache"))  # fits
    with pytest.raises(DataError, match=r"--data-path .*data_text_document: token id 999 \(sequence 1000, "
                                        r"token 2\) is outside .* vocabulary of 500 ids"):
        check_token_ids_fit([prefix], 500, cache_path=str(tmp_path / "cache"))


def test_ids_in_the_vocabulary_padding_and_negative_ids_are_errors(tmp_path):
    prefix = str(tmp_path / "padded")
    _write(prefix, [[1, 2], [300, 3]], np.uint16)  # a 300-id tokenizer, padded to 384 for TP
    with pytest.raises(DataError, match=r"token id 300 \(sequence 1, token 0\).* vocabulary of 300 ids"):
        check_token_ids_fit([prefix], 300)
    signed = str(tmp_path / "signed")
    _write(signed, [[1, 2], [3, -4]], np.int32)
    with pytest.raises(DataError, match=r"token id -4 \(sequence 1, token 1\)"):
        check_token_ids_fit([signed], 300)


def test_a_dtype_too_small_for_the_vocabulary_is_not_read(tmp_path, monkeypatch):
    prefix = str(tmp_path / "small")
    _write(prefix, [[65535, 1]], np.uint16)
    monkeypatch.setattr(token_range, "scan", lambda *a, **k: pytest.fail("read the .bin"))
    check_token_ids_fit([prefix], 70000)  # uint16 cannot hold an id >= 70000
    monkeypatch.undo()
    with pytest.raises(DataError):
        check_token_ids_fit([prefix], 60000)


def test_the_result_is_remembered_beside_the_cache_until_the_files_change(tmp_path, monkeypatch):
    prefix = str(tmp_path / "data")
    _write(prefix, [[1, 2, 3], [4, 5]], np.uint16)
    cache = str(tmp_path / "cache")
    scans = []
    original = token_range.scan
    monkeypatch.setattr(token_range, "scan", lambda *a, **k: scans.append(1) or original(*a, **k))
    check_token_ids_fit([prefix], 100, cache_path=cache)
    check_token_ids_fit([prefix], 100, cache_path=cache)
    assert scans == [1]
    records = [name for name in os.listdir(os.path.join(cache, ".megatron-lite")) if name.startswith("token_range-")]
    assert len(records) == 1 and records[0].startswith("token_range-data-")
    assert os.listdir(cache) == [".megatron-lite"]  # ours, hidden, inside the directory the user gave

    # A bad id written in place (same size, new mtime): found on the next run.
    with open(prefix + ".bin", "r+b") as stream:
        stream.seek(2)
        stream.write(np.uint16(150).tobytes())
    os.utime(prefix + ".bin", ns=(1, os.stat(prefix + ".bin").st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"token id 150 \(sequence 0, token 1\)"):
        check_token_ids_fit([prefix], 100, cache_path=cache)
    assert scans == [1, 1]

    # The default place (no --data-cache-path) is beside the data, next to its index cache.
    check_token_ids_fit([prefix], 200)
    assert any(name.startswith("token_range-")
               for name in os.listdir(prefix + "/cache/GPTDataset_indices/.megatron-lite"))


def test_an_unwritable_place_keeps_the_result_in_memory(tmp_path, monkeypatch):
    prefix = str(tmp_path / "data")
    _write(prefix, [[1, 2, 3]], np.uint16)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache directory's parent should be")
    scans = []
    original = token_range.scan
    monkeypatch.setattr(token_range, "scan", lambda *a, **k: scans.append(1) or original(*a, **k))
    for _ in range(2):
        check_token_ids_fit([prefix], 100, cache_path=str(blocker / "cache"))
    assert scans == [1]


def test_the_scan_is_chunked_and_finds_the_first_extremes(tmp_path, monkeypatch):
    prefix = str(tmp_path / "data")
    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 1000, size=5000).astype(np.int32)
    tokens[1234], tokens[4321], tokens[4999] = 5000, -7, 5000
    _write(prefix, [tokens[i:i + 100] for i in range(0, 5000, 100)], np.int32)
    monkeypatch.setattr(token_range, "_CHUNK_BYTES", 4 * 333)  # chunks that cut sequences
    found = token_range.scan(prefix + ".bin", np.int32)
    assert (found.min, found.min_at, found.max, found.max_at, found.tokens) == (-7, 4321, 5000, 1234, 5000)
    dataset = IndexedDataset(prefix)
    assert token_range.sequence_of_token(dataset, 1234) == 12
