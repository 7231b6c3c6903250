"""Our .bin/.idx reader and writer against files written by megatron-core itself.

The fixtures under tests/fixtures/indexed/ come from tests/fixtures/make_indexed_reference.py,
run with the PyPI megatron-core in its own venv. Here we only read them.
"""

import json
import os
import pickle
import shutil
import struct

import numpy
import pytest

from megatron.core.datasets.indexed_dataset import (
    DType,
    IndexedDataset,
    IndexedDatasetBuilder,
    get_bin_path,
    get_idx_path,
)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "indexed")
with open(os.path.join(FIXTURES, "recipes.json")) as _f:
    RECIPES = json.load(_f)["recipes"]


def replay(recipe, builder, prefix_dir):
    for call in recipe["calls"]:
        op, args = call[0], call[1:]
        if op == "add_item":
            builder.add_item(numpy.array(args[0], dtype=numpy.int64), mode=args[1])
        elif op == "end_document":
            builder.end_document()
        elif op == "add_document":
            builder.add_document(args[0], args[1], modes=args[2] if len(args) > 2 else None)
        elif op == "add_index":
            builder.add_index(os.path.join(prefix_dir, args[0]))


def expected_contents(name):
    """(sequences, document_indices, modes) that a recipe describes."""
    sequences, documents, modes = [], [0], []
    for call in RECIPES[name]["calls"]:
        op, args = call[0], call[1:]
        if op == "add_item":
            sequences.append(args[0])
            modes.append(args[1])
        elif op == "end_document":
            documents.append(len(sequences))
        elif op == "add_document":
            tokens, lengths = args[0], args[1]
            starts = numpy.cumsum([0] + lengths)
            sequences.extend(tokens[a:b] for a, b in zip(starts[:-1], starts[1:]))
            modes.extend(args[2] if len(args) > 2 else [0] * len(lengths))
            documents.append(len(sequences))
        elif op == "add_index":
            inner_sequences, inner_documents, inner_modes = expected_contents(args[0])
            documents.extend(d + len(sequences) for d in inner_documents[1:])
            sequences.extend(inner_sequences)
            modes.extend(inner_modes)
    return sequences, documents, modes


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("name", list(RECIPES))
def test_writer_reproduces_megatron_core_bytes(tmp_path, name):
    # Build every dataset the recipe may merge, in recipe order, then compare this one.
    for other, recipe in RECIPES.items():
        prefix = str(tmp_path / other)
        builder = IndexedDatasetBuilder(
            get_bin_path(prefix), dtype=getattr(numpy, recipe["dtype"]), multimodal=recipe["multimodal"]
        )
        replay(recipe, builder, str(tmp_path))
        builder.finalize(get_idx_path(prefix))
        if other == name:
            break
    for suffix in (".bin", ".idx"):
        ours = read_bytes(str(tmp_path / name) + suffix)
        assert ours == read_bytes(os.path.join(FIXTURES, name) + suffix), f"{name}{suffix} differs"
    leftovers = [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    assert leftovers == []


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("name", list(RECIPES))
def test_reader_reads_megatron_core_files(name, mmap):
    recipe = RECIPES[name]
    dataset = IndexedDataset(os.path.join(FIXTURES, name), multimodal=recipe["multimodal"], mmap=mmap)
    sequences, documents, modes = expected_contents(name)
    assert len(dataset) == len(sequences)
    assert dataset.index.dtype is getattr(numpy, recipe["dtype"])
    assert dataset.document_indices.tolist() == documents
    assert dataset.sequence_lengths.tolist() == [len(s) for s in sequences]
    itemsize = numpy.dtype(recipe["dtype"]).itemsize
    assert dataset.sequence_pointers.tolist() == (
        numpy.cumsum([0] + [len(s) for s in sequences])[:-1] * itemsize
    ).tolist()
    for i, expected in enumerate(sequences):
        item = dataset[i]
        if recipe["multimodal"]:
            item, mode = item
            assert mode == modes[i]
        assert item.tolist() == expected
    if recipe["multimodal"]:
        assert dataset.sequence_modes.tolist() == modes
        got, got_modes = dataset[0 : len(sequences)]
        assert got_modes.tolist() == modes
    else:
        got = dataset[0 : len(sequences)]
    assert [g.tolist() for g in got] == sequences


def test_get_reads_part_of_a_sequence_and_slices_are_contiguous():
    dataset = IndexedDataset(os.path.join(FIXTURES, "sentences_int32"))
    sequences, _, _ = expected_contents("sentences_int32")
    i = max(range(len(sequences)), key=lambda k: len(sequences[k]))
    full = sequences[i]
    assert dataset.get(i).tolist() == full
    assert dataset.get(i, offset=2).tolist() == full[2:]
    assert dataset.get(i, offset=1, length=3).tolist() == full[1:4]
    assert dataset.get(numpy.int64(i), length=2).tolist() == full[:2]
    assert [s.tolist() for s in dataset[3:7]] == sequences[3:7]
    with pytest.raises(IndexError):
        dataset.get(i, offset=len(full) - 1, length=2)
    with pytest.raises(ValueError, match="contiguous"):
        dataset[0:6:2]
    with pytest.raises(TypeError):
        dataset["0"]


def test_pickled_dataset_reopens_its_files():
    dataset = IndexedDataset(os.path.join(FIXTURES, "gpt_uint16"), mmap=False)
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.mmap is False
    assert [clone[i].tolist() for i in range(len(clone))] == [
        dataset[i].tolist() for i in range(len(dataset))
    ]


def test_dtype_codes_and_optimal_dtype():
    codes = {numpy.uint8: 1, numpy.int8: 2, numpy.int16: 3, numpy.int32: 4, numpy.int64: 5,
             numpy.float64: 6, numpy.float32: 7, numpy.uint16: 8}
    for dtype, code in codes.items():
        assert DType.code_from_dtype(dtype) == code
        assert DType.dtype_from_code(code) is dtype
        assert DType.size(code) == DType.size(dtype) == numpy.dtype(dtype).itemsize
    assert DType.optimal_dtype(50257) is numpy.uint16
    assert DType.optimal_dtype(65499) is numpy.uint16
    assert DType.optimal_dtype(65500) is numpy.int32
    assert DType.optimal_dtype(None) is numpy.int32
    with pytest.raises(ValueError, match="unknown dtype code 9"):
        DType.dtype_from_code(9)


def test_batch_writer_matches_document_writer(tmp_path):
    sequences, documents, _ = expected_contents("sentences_int32")
    builder = IndexedDatasetBuilder(str(tmp_path / "batch.bin"), dtype=numpy.int32)
    counts = numpy.diff(documents)
    builder.add_document_batch(
        numpy.array([t for s in sequences for t in s]), [len(s) for s in sequences], counts
    )
    builder.finalize(str(tmp_path / "batch.idx"))
    for suffix in (".bin", ".idx"):
        assert read_bytes(str(tmp_path / "batch") + suffix) == read_bytes(
            os.path.join(FIXTURES, "sentences_int32") + suffix
        )


def test_builder_refuses_ids_that_do_not_fit_and_mismatched_merges(tmp_path):
    builder = IndexedDatasetBuilder(str(tmp_path / "a.bin"), dtype=numpy.uint16)
    with pytest.raises(ValueError, match="do not fit the dataset dtype uint16"):
        builder.add_item(numpy.array([1, 70000]))
    with pytest.raises(ValueError, match="add up to 3 tokens but the document has 2"):
        builder.add_document([1, 2], [3])
    with pytest.raises(ValueError, match="int32 tokens"):
        builder.add_index(os.path.join(FIXTURES, "sentences_int32"))
    builder.abort()
    assert os.listdir(tmp_path) == []


def test_unfinished_builder_leaves_no_final_names(tmp_path):
    builder = IndexedDatasetBuilder(str(tmp_path / "d.bin"), dtype=numpy.uint16)
    builder.add_document([1, 2, 3], [3])
    assert not IndexedDataset.exists(str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d.bin")
    builder.finalize(str(tmp_path / "d.idx"))
    assert IndexedDataset.exists(str(tmp_path / "d"))
    assert sorted(os.listdir(tmp_path)) == ["d.bin", "d.idx"]


@pytest.fixture
def copy_of_gpt(tmp_path):
    for suffix in (".bin", ".idx"):
        shutil.copy(os.path.join(FIXTURES, "gpt_uint16") + suffix, tmp_path / ("gpt" + suffix))
    return str(tmp_path / "gpt")


def test_missing_files_name_both_paths(copy_of_gpt):
    os.remove(copy_of_gpt + ".bin")
    with pytest.raises(FileNotFoundError) as error:
        IndexedDataset(copy_of_gpt)
    assert copy_of_gpt + ".bin" in str(error.value) and copy_of_gpt + ".idx" in str(error.value)
    os.remove(copy_of_gpt + ".idx")
    with pytest.raises(FileNotFoundError, match="missing: .*gpt.idx, .*gpt.bin"):
        IndexedDataset(copy_of_gpt)


def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_damaged_index_is_refused_by_name(copy_of_gpt):
    idx = copy_of_gpt + ".idx"
    original = read_bytes(idx)

    _patch(idx, 0, b"TNTIDX\x00\x00")
    with pytest.raises(ValueError, match="legacy lazy/cached index"):
        IndexedDataset(copy_of_gpt)

    _patch(idx, 0, original[:9] + struct.pack("<Q", 2))
    with pytest.raises(ValueError, match="index version 2"):
        IndexedDataset(copy_of_gpt)

    _patch(idx, 9, struct.pack("<QB", 1, 42))
    with pytest.raises(ValueError, match="unknown dtype code 42"):
        IndexedDataset(copy_of_gpt)

    with open(idx, "wb") as f:
        f.write(original[:-8])
    with pytest.raises(ValueError, match="gpt.idx is truncated"):
        IndexedDataset(copy_of_gpt)

    with open(idx, "wb") as f:
        f.write(original[:20])
    with pytest.raises(ValueError, match="shorter than the 34-byte header"):
        IndexedDataset(copy_of_gpt)


def test_bin_of_the_wrong_size_is_refused(copy_of_gpt):
    bin_path = copy_of_gpt + ".bin"
    data = read_bytes(bin_path)
    with open(bin_path, "wb") as f:
        f.write(data[:-2])
    with pytest.raises(ValueError, match=f"{len(data) - 2} bytes but .* describes {len(data)} bytes"):
        IndexedDataset(copy_of_gpt)
    with open(bin_path, "wb") as f:
        f.write(data + b"\x00\x00")
    with pytest.raises(ValueError, match="do not belong together"):
        IndexedDataset(copy_of_gpt)
    builder = IndexedDatasetBuilder(copy_of_gpt + "_merged.bin", dtype=numpy.uint16)
    with pytest.raises(ValueError, match="do not belong together"):
        builder.add_index(copy_of_gpt)
    builder.abort()
