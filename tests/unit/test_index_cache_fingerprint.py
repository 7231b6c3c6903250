"""Index caches remember the .idx they were built from (a sidecar of ours beside Megatron's files).

The dangerous case is data rewritten under the same prefix with the same sequence count and token
total: every cached array keeps its shape, so only the fingerprint tells the indices are stale.
"""

import json
import logging
import os

import numpy
import pytest

from megatron.core.datasets import fingerprint
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset
from tests.dataset_helpers import gpt_config, write_documents


def write(prefix, lengths):
    write_documents(prefix, lengths)


def build(prefix, cache):
    config = gpt_config(([prefix], None), seed=5, path_to_cache=str(cache))
    return BlendedMegatronDatasetBuilder(GPTDataset, [40, None, None], lambda: True, config).build()[0]


LENGTHS = [30, 5, 12, 40, 7, 22, 3, 19] * 4


@pytest.fixture
def data(tmp_path):
    prefix = str(tmp_path / "corpus")
    write(prefix, LENGTHS)
    return prefix, tmp_path / "cache"


def sidecars(cache):
    """Our fingerprints of the cached indices (the directory also records the .idx check)."""
    directory = fingerprint.sidecar_directory(str(cache))
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(name for name in names if name.endswith("-fingerprint.json"))


def test_data_rewritten_with_the_same_shapes_rebuilds_the_indices(data, caplog):
    prefix, cache = data
    first = build(prefix, cache)
    assert len(sidecars(cache)) == 1 and sidecars(cache)[0].endswith("-GPTDataset-train-fingerprint.json")
    # Same sequence count, same token total, other lengths: every cached array has its old shape.
    write(prefix, list(reversed(LENGTHS)))
    caplog.set_level(logging.WARNING)
    second = build(prefix, cache)
    assert "corpus.idx changed since they were built (its sequence lengths changed). Rebuilding" in caplog.text
    assert first.sample_index.shape == second.sample_index.shape
    assert not numpy.array_equal(first.sample_index, second.sample_index)
    fresh = build(prefix, cache.parent / "fresh")
    numpy.testing.assert_array_equal(second.sample_index, fresh.sample_index)
    third = build(prefix, cache)  # the rebuilt cache is used again
    assert isinstance(third.sample_index, numpy.memmap)


def test_a_touched_or_copied_idx_keeps_its_cache(data, caplog):
    prefix, cache = data
    build(prefix, cache)
    stat = os.stat(prefix + ".idx")
    os.utime(prefix + ".idx", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    caplog.set_level(logging.WARNING)
    again = build(prefix, cache)
    assert isinstance(again.sample_index, numpy.memmap) and "Rebuilding" not in caplog.text
    record = json.load(open(os.path.join(fingerprint.sidecar_directory(str(cache)), sidecars(cache)[0])))
    assert record["idx_mtime_ns"] == stat.st_mtime_ns + 5 * 10**9  # remembered: no hashing next time


def test_a_cache_without_our_sidecar_is_used_when_newer_than_the_data(data, caplog):
    # What Megatron-LM writes: the same files, no sidecar.
    prefix, cache = data
    build(prefix, cache)
    megatron_files = sorted(os.listdir(cache))
    os.remove(os.path.join(fingerprint.sidecar_directory(str(cache)), sidecars(cache)[0]))
    caplog.set_level(logging.WARNING)
    adopted = build(prefix, cache)
    assert isinstance(adopted.sample_index, numpy.memmap) and "Rebuilding" not in caplog.text
    assert len(sidecars(cache)) == 1  # it has one now
    assert sorted(os.listdir(cache)) == megatron_files  # and Megatron's directory is unchanged

    # Data written after the cache, and no sidecar: it may be stale, so it is rebuilt.
    os.remove(os.path.join(fingerprint.sidecar_directory(str(cache)), sidecars(cache)[0]))
    later = os.stat(next(cache.glob("*-description.txt"))).st_mtime_ns + 10**9
    os.utime(prefix + ".idx", ns=(later, later))
    rebuilt = build(prefix, cache)
    assert "have no fingerprint of ours and" in caplog.text and "Rebuilding" in caplog.text
    assert not isinstance(rebuilt.sample_index, numpy.memmap)
