"""GPTDataset against megatron-core's own output (tests/fixtures/gpt_dataset), and its caches.

Run: python -m pytest -q tests/unit/test_gpt_dataset.py
"""

import os

import numpy
import pytest

from megatron.core.datasets import helpers
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
from megatron.core.datasets.utils import Split
from tests.fixtures.gpt_dataset.checks import (
    FIXTURE_DIR,
    copy_fixture_data,
    PREFIXES,
    assert_gpt_indices_match,
    assert_samples_match,
    case_config,
    md5_of,
    reference,
)


@pytest.fixture
def in_fixture_dir(monkeypatch, tmp_path):
    """Work among copies of the reference data, opened with the reference's relative prefixes
    (same descriptions and MD5s); default caches ("data_a/cache") land in the copy."""
    monkeypatch.chdir(copy_fixture_data(tmp_path / "data"))


def build(name, cache_dir, cls=GPTDataset, **overrides):
    sizes, config = case_config(name, **overrides)
    config = GPTDatasetConfig(path_to_cache=str(cache_dir), **config)
    return BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, config).build()


# ---- the .bin/.idx files: reader and writer ---------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_reader_and_writer_reproduce_megatron_files(prefix, tmp_path):
    layout = numpy.load(os.path.join(FIXTURE_DIR, f"{prefix}_layout.npz"))
    dtype = numpy.dtype(str(layout["dtype"]))
    tokens = numpy.fromfile(os.path.join(FIXTURE_DIR, f"{prefix}.bin"), dtype=dtype)
    lengths, boundaries = layout["lengths"], layout["document_indices"]
    sequences = numpy.split(tokens, numpy.cumsum(lengths)[:-1])

    dataset = IndexedDataset(os.path.join(FIXTURE_DIR, prefix))
    numpy.testing.assert_array_equal(dataset.sequence_lengths, lengths)
    numpy.testing.assert_array_equal(dataset.document_indices, boundaries)
    for i in (0, len(sequences) // 2, len(sequences) - 1):
        numpy.testing.assert_array_equal(dataset.get(i), sequences[i])

    out = str(tmp_path / prefix)
    builder = IndexedDatasetBuilder(out + ".bin", dtype=dtype)
    for begin, end in zip(boundaries[:-1], boundaries[1:]):
        for sequence in sequences[begin:end]:
            builder.add_item(sequence)
        builder.end_document()
    builder.finalize(out + ".idx")
    for suffix in (".bin", ".idx"):
        with (
            open(out + suffix, "rb") as ours,
            open(os.path.join(FIXTURE_DIR, prefix + suffix), "rb") as ref,
        ):
            assert ours.read() == ref.read(), suffix


# ---- indices and samples identical to megatron-core ------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "single_two_splits",
        "single_unseparated",
        "no_extra_token",
        "threshold_separated",
        "threshold_not_separated",
    ],
)
def test_gpt_dataset_matches_megatron(name, in_fixture_dir, tmp_path):
    info, _ = reference()
    datasets = build(name, tmp_path)
    for split, dataset in zip(("train", "valid", "test"), datasets):
        key = info[name]["splits"][split]
        if key is None:
            assert dataset is None
            continue
        assert_gpt_indices_match(dataset, key)
        assert_samples_match(dataset, key)


def test_separated_last_epoch_and_epoch_counts(in_fixture_dir, tmp_path):
    # 1650 samples of ~400 per epoch: 5 epochs, the 5th contributes < 80% so it is shuffled apart.
    train, _, _ = build("single_two_splits", tmp_path)
    epoch_docs = len(train.indices)
    assert len(train.document_index) == 5 * epoch_docs
    last_epoch = numpy.sort(train.document_index[-epoch_docs:])
    numpy.testing.assert_array_equal(last_epoch, numpy.sort(train.indices))
    tokens_per_epoch = int(train.dataset.sequence_lengths[train.indices].sum())
    before_last = (4 * tokens_per_epoch - 1) // 32
    assert set(train.shuffle_index[before_last:].tolist()) == set(range(before_last, len(train)))


def test_descriptions_and_cache_names_are_megatrons(in_fixture_dir, tmp_path):
    info, _ = reference()
    build("single_two_splits", tmp_path / "cache")
    # Megatron's files exactly (our sidecars sit in the hidden .megatron-lite/ folder).
    assert sorted(n for n in os.listdir(tmp_path / "cache") if not n.startswith(".")) == info["single_two_splits"]["cache_files"]
    key = "single_two_splits/train"
    name = f"{info[key]['description_md5']}-GPTDataset-train-description.txt"
    assert (tmp_path / "cache" / name).read_text() == info[key]["description"]


def test_non_default_settings_get_their_own_cache_name(in_fixture_dir, tmp_path):
    # Megatron leaves add_extra_token_to_sequence out of the description, so its caches of the
    # two settings collide; ours differ (only) when the setting is off its default.
    info, _ = reference()
    train, _, _ = build("no_extra_token", tmp_path)
    assert train.unique_description_hash != info["no_extra_token/train"]["description_md5"]
    with_extra, _, _ = build("no_extra_token", tmp_path, add_extra_token_to_sequence=True)
    assert with_extra.unique_description_hash != train.unique_description_hash
    # Same shapes here, different offsets: a shared cache name would have served wrong samples.
    assert with_extra.sample_index.shape == train.sample_index.shape
    assert not numpy.array_equal(with_extra.sample_index, train.sample_index)


# ---- caches: reused, validated, rebuilt -------------------------------------------------------


def _index_files(directory):
    return sorted(p for p in os.listdir(directory) if p.endswith(".npy"))


def test_cache_is_reused_on_the_second_run(in_fixture_dir, tmp_path, monkeypatch):
    first, _, _ = build("single_two_splits", tmp_path)
    calls = []
    original = helpers.build_sample_idx
    monkeypatch.setattr(
        helpers, "build_sample_idx", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    second, _, _ = build("single_two_splits", tmp_path)
    assert calls == []
    assert isinstance(second.sample_index, numpy.memmap)
    numpy.testing.assert_array_equal(first.shuffle_index, second.shuffle_index)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "description"])
def test_corrupted_or_stale_cache_is_detected_and_rebuilt(damage, in_fixture_dir, tmp_path, caplog):
    first, _, _ = build("single_two_splits", tmp_path)
    sample_file = next(p for p in _index_files(tmp_path) if "train-sample_index" in p)
    path = tmp_path / sample_file
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file at all")
    elif damage == "wrong_shape":  # e.g. the data was re-tokenized under the same path
        numpy.save(path, numpy.zeros((7, 2), dtype=numpy.int32))
    else:
        description = next(tmp_path.glob("*-GPTDataset-train-description.txt"))
        description.write_text(description.read_text() + " ")
    second, _, _ = build("single_two_splits", tmp_path)
    assert "Rebuilding" in caplog.text
    numpy.testing.assert_array_equal(first.sample_index, second.sample_index)
    assert_gpt_indices_match(second, "single_two_splits/train")
    third, _, _ = build("single_two_splits", tmp_path)  # and the rewritten cache is good again
    assert isinstance(third.sample_index, numpy.memmap)


def test_unwritable_cache_dir_keeps_indices_in_memory(in_fixture_dir, tmp_path, caplog):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the cache directory should be")
    train, _, _ = build("single_two_splits", blocker / "cache")
    assert "Could not write the dataset index cache" in caplog.text
    assert_gpt_indices_match(train, "single_two_splits/train")


def test_racing_writers_leave_a_consistent_cache(in_fixture_dir, tmp_path):
    # Two "jobs" build the same indices at once; threads interleave the atomic renames.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: build("single_two_splits", tmp_path)[0], range(4)))
    for result in results:
        assert_gpt_indices_match(result, "single_two_splits/train")
    loaded, _, _ = build("single_two_splits", tmp_path)
    assert isinstance(loaded.sample_index, numpy.memmap)
    assert_gpt_indices_match(loaded, "single_two_splits/train")


# ---- errors -----------------------------------------------------------------------------------


def test_split_without_documents_is_an_error_not_a_hang(in_fixture_dir, tmp_path):
    # 400 sequences: a 0.1% test split rounds to no sequence at all.
    sizes, config = case_config("single_two_splits", split="998,1,1")
    config = GPTDatasetConfig(path_to_cache=str(tmp_path), **config)
    with pytest.raises(ValueError, match="test split of data_a has 0 sequences"):
        BlendedMegatronDatasetBuilder(GPTDataset, [10, 10, 5], lambda: True, config).build()
    # No samples requested from it: an empty dataset, not an error.
    _, _, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [10, 10, 0], lambda: True, config
    ).build()
    assert len(test) == 0


def test_config_errors_name_the_flag():
    base = dict(
        random_seed=1,
        sequence_length=8,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer=object(),
    )
    with pytest.raises(ValueError, match="--split"):
        GPTDatasetConfig(blend=(["a"], None), **base)
    with pytest.raises(ValueError, match="2 prefixes but 1 weights"):
        GPTDatasetConfig(blend=(["a", "b"], [1.0]), split="1", **base)
    with pytest.raises(ValueError, match="mutually exclusive"):
        GPTDatasetConfig(blend=(["a"], None), blend_per_split=[(["a"], None), None, None], **base)
    with pytest.raises(ValueError, match="--split"):
        GPTDatasetConfig(blend=(["a"], None), split="1,2,3,4", **base)
    with pytest.raises(ValueError, match="reset_position_ids"):
        GPTDatasetConfig(
            random_seed=1,
            sequence_length=8,
            blend=(["a"], None),
            split="1",
            tokenizer=object(),
            reset_attention_mask=False,
            eod_mask_loss=False,
        )


# ---- the numpy sample-index builder against helpers.cpp --------------------------------------


def test_build_sample_idx_matches_megatron_cpp_on_large_inputs():
    info, _ = reference()
    for case in info["helpers"]["sample_idx"]:
        rng = numpy.random.default_rng(case["seed"])
        sizes = rng.integers(0, case["max_len"], size=case["num_docs"], dtype=numpy.int32)
        documents = numpy.arange(case["num_docs"], dtype=numpy.int32)
        document_index = numpy.tile(documents, case["num_epochs"])
        rng.shuffle(document_index)
        # The inputs are regenerated from seeds: first make sure numpy made the same ones.
        assert (
            md5_of(sizes) == case["sizes_md5"]
            and md5_of(document_index) == case["document_index_md5"]
        )
        result = helpers.build_sample_idx(
            sizes,
            document_index,
            case["seq_length"],
            case["num_epochs"],
            int(sizes.sum()),
            case["drop_last_partial_sequence"],
            case["add_extra_token_to_sequence"],
        )
        assert result.dtype.name == case["dtype"] and list(result.shape) == case["shape"]
        assert md5_of(result) == case["md5"], case


def test_gpt_dataset_reads_samples_across_documents(in_fixture_dir, tmp_path):
    # Independent of the reference: sample k is tokens [k*L, k*L + L] of the shuffled stream.
    train, _, _ = build("single_unseparated", tmp_path)
    stream = numpy.concatenate([train.dataset.get(int(d)) for d in train.document_index]).astype(
        numpy.int64
    )
    for position in (0, 5, len(train) - 1):
        k = int(train.shuffle_index[position])
        text, _ = train._query_document_sample_shuffle_indices(position)
        numpy.testing.assert_array_equal(text, stream[k * 32 : k * 32 + 33])
    assert train.index_split == Split.train


# ---- from flags (megatron.training.datasets.gpt) ---------------------------------------------


def test_flags_build_the_reference_datasets(in_fixture_dir, tmp_path):
    from types import SimpleNamespace

    from megatron.training.datasets.gpt import build_gpt_datasets, gpt_dataset_config_from_args

    _, config = case_config("single_two_splits")
    args = SimpleNamespace(
        data_path=["data_a"],
        split="80,20,0",
        seed=1234,
        seq_length=32,
        data_cache_path=str(tmp_path),
        reset_position_ids=True,
        reset_attention_mask=True,
        eod_mask_loss=True,
        mock_data=False,
        mmap_bin_files=False,
        create_attention_mask_in_dataloader=True,
    )
    train, valid, test = build_gpt_datasets(args, [1650, 60, 0], config["tokenizer"])
    assert_gpt_indices_match(train, "single_two_splits/train")
    assert_samples_match(valid, "single_two_splits/valid")  # read with pread (--no-mmap-bin-files)
    assert test is None

    # --data-path without --split gets Megatron's legacy default 969,30,1.
    args.split = None
    assert gpt_dataset_config_from_args(args, config["tokenizer"]).split == "969, 30, 1"
    # --mock-data ignores data paths; no tokenizer is needed for mock data.
    args.mock_data, args.create_attention_mask_in_dataloader = True, False
    mock_train, _, _ = build_gpt_datasets(args, [10, 2, 2], None)
    assert type(mock_train).__name__ == "MockGPTDataset" and "attention_mask" not in mock_train[0]


# ---- distributed: one builder per node, node-local or shared caches ---------------------------


def _build_on_two_nodes(rank, world_size, base_dir):
    """Ranks 0, 1 are node 0 and ranks 2, 3 node 1 (LOCAL_RANK 0, 1, 0, 1)."""
    os.environ["LOCAL_RANK"] = str(rank % 2)
    os.chdir(os.path.join(base_dir, "data"))
    calls = []
    original = helpers.build_sample_idx
    helpers.build_sample_idx = lambda *a, **k: calls.append(1) or original(*a, **k)
    results = {}
    for layout, cache_dir in (
        ("node_local", os.path.join(base_dir, f"node{rank // 2}")),
        ("shared", os.path.join(base_dir, "shared")),
    ):
        calls.clear()
        train, _, _ = build("single_two_splits", cache_dir)
        results[layout] = (len(calls) > 0, md5_of(train.shuffle_index), md5_of(train.sample_index))
    # Like tensor-parallel size 2: only even ranks need data; the others still join the
    # barriers (a blend goes through every build path) and get None.
    sizes, config = case_config("blend_three", path_to_cache=os.path.join(base_dir, "blend"))
    blends = BlendedMegatronDatasetBuilder(
        GPTDataset, sizes, lambda: rank % 2 == 0, GPTDatasetConfig(**config)
    ).build()
    results["blend"] = [None if b is None else md5_of(b.dataset_index) for b in blends]
    return results


def test_indices_are_built_once_per_node_with_node_local_caches(tmp_path):
    from tests.harness import run_distributed

    info, _ = reference()
    expected = info["single_two_splits/train"]
    copy_fixture_data(tmp_path / "data")
    results = run_distributed(_build_on_two_nodes, 4, str(tmp_path))
    _, arrays = reference()
    blend_md5 = [
        md5_of(arrays[f"blend_three/{split}/dataset_index"]) for split in ("train", "valid", "test")
    ]
    for rank, result in enumerate(results):
        assert result.pop("blend") == (blend_md5 if rank % 2 == 0 else [None] * 3), rank
        for layout, (built, shuffle_md5, sample_md5) in result.items():
            assert (shuffle_md5, sample_md5) == (
                expected["shuffle_index_md5"],
                expected["sample_index_md5"],
            )
        # Node-local caches: each node's first rank builds, its other rank loads.
        assert result["node_local"][0] == (rank % 2 == 0), rank
        # A shared cache: rank 0 builds, everyone else finds its files.
        assert result["shared"][0] == (rank == 0), rank
