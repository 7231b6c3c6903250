"""BlendedDataset and the builder's blends against megatron-core (tests/fixtures/gpt_dataset).

Run: python -m pytest -q tests/unit/test_blended_dataset.py
"""

import os

import numpy
import pytest

from megatron.core.datasets import helpers
from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.utils import get_blend_from_list
from tests.fixtures.gpt_dataset.checks import (
    FIXTURE_DIR,
    copy_fixture_data,
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


def build(name, cache_dir=None, sizes=None, **overrides):
    case_sizes, config = case_config(name, **overrides)
    config = GPTDatasetConfig(path_to_cache=None if cache_dir is None else str(cache_dir), **config)
    return BlendedMegatronDatasetBuilder(
        GPTDataset, sizes or case_sizes, lambda: True, config
    ).build()


@pytest.mark.parametrize(
    "name", ["blend_three", "blend_unweighted", "blend_exhaustive", "per_split"]
)
def test_blends_match_megatron(name, in_fixture_dir, tmp_path):
    info, arrays = reference()
    datasets = build(name, tmp_path)
    for split, dataset in zip(("train", "valid", "test"), datasets):
        key = info[name]["splits"][split]
        if key is None:
            assert dataset is None
            continue
        if info[key]["class"] == "GPTDataset":
            assert_gpt_indices_match(dataset, key)
        else:
            assert isinstance(dataset, BlendedDataset)
            assert dataset.unique_description == info[key]["description"]
            assert dataset.weights == pytest.approx(info[key]["weights"], abs=0)
            assert dataset.dataset_index.dtype == numpy.int16
            assert dataset.dataset_sample_index.dtype == numpy.int64
            numpy.testing.assert_array_equal(dataset.dataset_index, arrays[f"{key}/dataset_index"])
            numpy.testing.assert_array_equal(
                dataset.dataset_sample_index, arrays[f"{key}/dataset_sample_index"]
            )
            for i, component in enumerate(dataset.datasets):
                assert_gpt_indices_match(component, f"{key}/component_{i}")
                assert component.unique_description == info[f"{key}/component_{i}"]["description"]
        assert_samples_match(dataset, key)


def test_blend_cache_files_are_megatrons_and_reused(in_fixture_dir, tmp_path, monkeypatch):
    info, _ = reference()
    first = build("blend_three", tmp_path / "cache")[0]
    # Megatron's files exactly (our sidecars sit in the hidden .megatron-lite/ folder).
    assert sorted(n for n in os.listdir(tmp_path / "cache") if not n.startswith(".")) == info["blend_three"]["cache_files"]
    calls = []
    monkeypatch.setattr(helpers, "build_blending_indices", lambda *a: calls.append(a))
    again = build("blend_three", tmp_path / "cache")[0]
    assert calls == []
    assert isinstance(again.dataset_index, numpy.memmap)
    numpy.testing.assert_array_equal(first.dataset_sample_index, again.dataset_sample_index)


def test_corrupted_blend_cache_is_rebuilt(in_fixture_dir, tmp_path, caplog):
    first = build("blend_three", tmp_path)[0]
    index_file = next(tmp_path.glob("*-BlendedDataset-train-dataset_index.npy"))
    numpy.save(index_file, numpy.zeros(3, dtype=numpy.int16))
    again = build("blend_three", tmp_path)[0]
    assert "Rebuilding" in caplog.text
    numpy.testing.assert_array_equal(first.dataset_index, again.dataset_index)


def test_blend_proportions_and_determinism():
    weights = [0.2, 0.5, 0.3]
    size = 10_000
    runs = []
    for _ in range(2):
        index = numpy.zeros(size, dtype=numpy.int16)
        sample = numpy.zeros(size, dtype=numpy.int64)
        helpers.build_blending_indices(index, sample, weights, 3, size, False)
        runs.append((index, sample))
    numpy.testing.assert_array_equal(runs[0][0], runs[1][0])
    index, sample = runs[0]
    counts = numpy.bincount(index, minlength=3)
    # The greedy never lags its quota by a whole sample, at any prefix of the blend.
    numpy.testing.assert_allclose(counts, numpy.array(weights) * size, atol=1.0)
    prefix = numpy.cumsum(numpy.eye(3, dtype=numpy.int64)[index], axis=0)
    quota = numpy.outer(numpy.arange(1, size + 1), weights)
    assert numpy.abs(prefix - quota).max() < 1.0
    for dataset in range(3):  # each component's samples are taken in order 0, 1, 2, ...
        numpy.testing.assert_array_equal(sample[index == dataset], numpy.arange(counts[dataset]))


def test_blending_helpers_match_megatron_cpp():
    info, _ = reference()
    for case in info["helpers"]["blending"]:
        size, weights = case["size"], case["weights"]
        index = numpy.zeros(size, dtype=numpy.int16)
        sample = numpy.zeros(size, dtype=numpy.int64)
        helpers.build_blending_indices(index, sample, weights, len(weights), size, False)
        assert md5_of(index) == case["dataset_index_md5"], (len(weights), size)
        assert md5_of(sample) == case["dataset_sample_index_md5"], (len(weights), size)
    for case in info["helpers"]["exhaustive"]:
        sizes = numpy.array(case["sizes"], dtype=numpy.int64)
        index = numpy.zeros(int(sizes.sum()), dtype=numpy.int16)
        sample = numpy.zeros(int(sizes.sum()), dtype=numpy.int64)
        helpers.build_exhaustive_blending_indices(index, sample, sizes, len(sizes))
        assert md5_of(index) == case["dataset_index_md5"], case["sizes"]
        assert md5_of(sample) == case["dataset_sample_index_md5"], case["sizes"]


def test_oversampling_a_component_is_an_index_error(in_fixture_dir):
    # Components built for a blend of 60 samples (one epoch each, a few hundred samples) cannot
    # serve a blend of 5000 (Megatron raises
    # IndexError too); the message names the component and the flag to raise.
    _, config = case_config("blend_three")
    config = GPTDatasetConfig(**config)
    components = (
        BlendedMegatronDatasetBuilder(GPTDataset, [60, 8, 2], lambda: True, config)
        .build()[0]
        .datasets
    )
    BlendedDataset(components, [1.0, 1.0, 1.0], 30, config)  # within their sizes: fine
    with pytest.raises(
        IndexError,
        match=r"requests \d+ samples from dataset \d \(data_.*--mid-level-dataset-surplus",
    ):
        BlendedDataset(components, [1.0, 1.0, 1.0], 5000, config)


def test_blend_weight_list_errors():
    with pytest.raises(ValueError, match="do not pair up"):
        get_blend_from_list(["0.3", "data_a", "0.7"])  # odd length with weights
    with pytest.raises(ValueError, match="do not pair up"):
        get_blend_from_list(["0.3", "data_a", "data_b", "data_c"])  # weight missing
    assert get_blend_from_list(["30", "a", "70", "b"]) == (["a", "b"], [30.0, 70.0])
    assert get_blend_from_list(["a", "b", "c"]) == (["a", "b", "c"], None)
    assert get_blend_from_list(None) is None


def test_blend_component_error_messages(in_fixture_dir):
    _, config = case_config("blend_three")
    config = GPTDatasetConfig(**config)
    with pytest.raises(ValueError, match="weights but no sample count"):
        BlendedMegatronDatasetBuilder(GPTDataset, [None, 8, 2], lambda: True, config)
    components = (
        BlendedMegatronDatasetBuilder(GPTDataset, [60, 8, 2], lambda: True, config)
        .build()[0]
        .datasets
    )
    with pytest.raises(ValueError, match="weight of data_b is 0.0"):
        BlendedDataset(components, [1.0, 0.0, 1.0], 10, config)
    with pytest.raises(ValueError, match="3 datasets but 2 weights"):
        BlendedDataset(components, [1.0, 1.0], 10, config)


# ---- from flags (megatron.training.datasets.gpt) ---------------------------------------------


def _flags(**values):
    from types import SimpleNamespace

    defaults = dict(
        seed=1234,
        seq_length=16,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        mock_data=False,
    )
    defaults.update(values)
    return SimpleNamespace(**defaults)


def test_data_path_flags_build_the_reference_blend(in_fixture_dir, tmp_path):
    from megatron.training.datasets.gpt import build_gpt_datasets

    info, arrays = reference()
    _, config = case_config("blend_three")
    args = _flags(
        data_path=["0.5", "data_a", "0.3", "data_b", "0.2", "data_c"],
        split="90,8,2",
        eod_mask_loss=True,
        data_cache_path=str(tmp_path),
    )
    train, valid, test = build_gpt_datasets(args, [601, 83, 21], config["tokenizer"])
    numpy.testing.assert_array_equal(train.dataset_index, arrays["blend_three/train/dataset_index"])
    assert test.unique_description == info["blend_three/test"]["description"]

    # The same blend from a --data-args-path file.
    blend_file = tmp_path / "blend.txt"
    blend_file.write_text("0.5 data_a\n0.3 data_b\n0.2 data_c\n")
    args = _flags(data_args_path=str(blend_file), split="90,8,2", eod_mask_loss=True)
    again, _, _ = build_gpt_datasets(args, [601, 83, 21], config["tokenizer"])
    numpy.testing.assert_array_equal(again.dataset_sample_index, train.dataset_sample_index)


def test_per_split_flags_build_the_reference_blends(in_fixture_dir, tmp_path):
    from megatron.training.datasets.gpt import build_gpt_datasets

    info, arrays = reference()
    _, config = case_config("per_split")
    args = _flags(
        seed=3,
        seq_length=20,
        train_data_path=["1", "data_a", "3", "data_b"],
        valid_data_path=["data_c"],
    )
    train, valid, test = build_gpt_datasets(args, [400, 50, 0], config["tokenizer"])
    numpy.testing.assert_array_equal(train.dataset_index, arrays["per_split/train/dataset_index"])
    assert_gpt_indices_match(valid, "per_split/valid")
    assert test is None

    per_split = tmp_path / "splits.json"
    per_split.write_text('{"train": "1 data_a 3 data_b", "valid": ["data_c"], "test": null}')
    train2, valid2, _ = build_gpt_datasets(
        _flags(seed=3, seq_length=20, per_split_data_args_path=str(per_split)),
        [400, 50, 0],
        config["tokenizer"],
    )
    numpy.testing.assert_array_equal(train2.dataset_sample_index, train.dataset_sample_index)
    with pytest.raises(ValueError, match="mutually exclusive"):
        build_gpt_datasets(
            _flags(data_path=["data_a"], valid_data_path=["data_c"]), [1, 1, 1], None
        )
