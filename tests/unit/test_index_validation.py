"""An .idx is checked when opened: pointers against lengths, the document index, the .bin size.

Each damage below is one that the header checks alone let through (the file has the right size);
the error must name the file, the sequence (or document) and what to do.
"""

import shutil
import struct

import numpy
import pytest

from megatron.core.datasets import index_validation, indexed_dataset
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.indexed_dataset_builder import IndexedDatasetBuilder
from megatron.core.errors import DataError

HEADER = 34
LENGTHS = [3, 0, 5, 2, 7, 1, 4, 6]  # one empty sequence: its pointer equals the next one's


@pytest.fixture
def dataset(tmp_path):
    prefix = str(tmp_path / "d")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=numpy.uint16)
    start = 0
    for doc in ([0, 1, 2], [3, 4], [5, 6, 7]):
        builder.add_document(numpy.arange(start, start + sum(LENGTHS[i] for i in doc)),
                             [LENGTHS[i] for i in doc])
        start += sum(LENGTHS[i] for i in doc)
    builder.finalize(prefix + ".idx")
    indexed_dataset._VALIDATED.clear()
    return prefix


def _patch(prefix, offset, fmt, value):
    with open(prefix + ".idx", "r+b") as stream:
        stream.seek(offset)
        stream.write(struct.pack(fmt, value))
    indexed_dataset._VALIDATED.clear()


def _refused(prefix, *fragments):
    with pytest.raises(DataError) as error:
        IndexedDataset(prefix)
    message = str(error.value)
    for fragment in (prefix + ".idx", "re-run tools/preprocess_data.py") + fragments:
        assert fragment in message, (fragment, message)


S = len(LENGTHS)
POINTERS_AT = HEADER + 4 * S
DOCUMENTS_AT = POINTERS_AT + 8 * S


def test_a_consistent_index_opens(dataset):
    opened = IndexedDataset(dataset)
    assert opened.sequence_lengths.tolist() == LENGTHS
    assert opened[4].tolist() == list(range(10, 17))


@pytest.mark.parametrize("sequence", [1, 2, 5, S - 1])
def test_a_pointer_out_of_place_is_named_by_sequence(dataset, sequence):
    right = 2 * sum(LENGTHS[:sequence])
    _patch(dataset, POINTERS_AT + 8 * sequence, "<q", right + 2)
    _refused(dataset, f"sequence {sequence} starts at byte {right + 2}", f"put it at byte {right}")


def test_swapped_lengths_with_the_same_total_are_found(dataset):
    # Lengths 5 and 2 swapped: same .bin size, same header; only the pointers disagree.
    _patch(dataset, HEADER + 4 * 2, "<i", 2)
    _patch(dataset, HEADER + 4 * 3, "<i", 5)
    _refused(dataset, "sequence 3 starts at byte 16", "put it at byte 10")


def test_first_pointer_must_be_zero(dataset):
    _patch(dataset, POINTERS_AT, "<q", 8)
    _refused(dataset, "sequence 0 starts at byte 8")


def test_negative_length(dataset):
    _patch(dataset, HEADER + 4 * 6, "<i", -4)
    _refused(dataset, "sequence 6 has length -4")


def test_document_index_must_not_decrease_and_must_end_at_the_sequence_count(dataset):
    _patch(dataset, DOCUMENTS_AT + 8 * 2, "<q", 2)  # [0, 3, 2, 8]: document 1 goes back
    _refused(dataset, "document 1 ends at sequence 2, before it starts (sequence 3)")
    _patch(dataset, DOCUMENTS_AT + 8 * 2, "<q", 5)
    _patch(dataset, DOCUMENTS_AT + 8 * 3, "<q", 7)
    _refused(dataset, "runs from 0 to 7, expected 0 to the 8 sequences")


def test_checks_hold_across_chunk_boundaries(dataset, monkeypatch):
    monkeypatch.setattr(index_validation, "_CHUNK", 3)
    IndexedDataset(dataset)
    for sequence in range(1, S):
        shutil.copy(dataset + ".idx", dataset + ".orig")
        right = 2 * sum(LENGTHS[:sequence])
        _patch(dataset, POINTERS_AT + 8 * sequence, "<q", right + 4)
        _refused(dataset, f"sequence {sequence} starts at byte {right + 4}")
        shutil.copy(dataset + ".orig", dataset + ".idx")
        indexed_dataset._VALIDATED.clear()
    _patch(dataset, DOCUMENTS_AT + 8 * 3, "<q", 4)  # [0, 3, 5, 4] with a last entry != 8 caught first
    _refused(dataset, "runs from 0 to 4")


def test_each_file_is_checked_once_per_process(dataset, monkeypatch):
    calls = []
    original = index_validation.check_lengths_and_pointers
    monkeypatch.setattr(index_validation, "check_lengths_and_pointers",
                        lambda *a: calls.append(1) or original(*a))
    for _ in range(3):
        IndexedDataset(dataset)
    assert calls == [1]


def test_a_record_beside_the_cache_spares_later_runs_the_checks(dataset, tmp_path, monkeypatch):
    calls = []
    original = index_validation.check_lengths_and_pointers
    monkeypatch.setattr(index_validation, "check_lengths_and_pointers",
                        lambda *a: calls.append(1) or original(*a))
    cache = str(tmp_path / "cache")
    IndexedDataset(dataset, check_record_directory=cache)
    indexed_dataset._VALIDATED.clear()  # as in a new process
    IndexedDataset(dataset, check_record_directory=cache)
    assert calls == [1]
    # Any write to the .idx (here: damage in place) makes the record stale: checked again.
    _patch(dataset, POINTERS_AT + 8 * 2, "<q", 1)
    with pytest.raises(DataError, match="sequence 2 starts at byte 1"):
        IndexedDataset(dataset, check_record_directory=cache)
    assert calls == [1, 1]
