"""Progress lines of long dataset phases; empty and too-short splits said by name."""

import logging
import time

import numpy
import pytest

from megatron.core.datasets import helpers, progress
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset
from megatron.core.datasets.progress import PhaseProgress
from megatron.core.datasets.split_checks import requested_but_empty_splits
from megatron.core.datasets.utils import Split
from megatron.core.errors import DataError
from tests.dataset_helpers import gpt_config, write_documents


def write(prefix, lengths):
    return write_documents(prefix, lengths)


def config(blend, split="1", seq_length=16, **overrides):
    return gpt_config(blend, split=split, seq_length=seq_length, **overrides)


@pytest.fixture
def quick_lines(monkeypatch):
    """Progress lines from the first moment, collected instead of printed."""
    lines = []
    monkeypatch.setattr(PhaseProgress, "delay", 0.0)
    monkeypatch.setattr(PhaseProgress, "interval", 0.0)
    monkeypatch.setattr(PhaseProgress, "thread_min_total", 0)
    monkeypatch.setattr(progress, "_emit", lines.append)
    return lines


def test_a_phase_reports_done_total_elapsed_and_eta(quick_lines):
    with PhaseProgress("Building things", 4, "ids") as phase:
        phase.set_step("step one")
        phase.advance(1)
    assert any(line.startswith("Building things: step one, 25.0% (1 / 4 ids), elapsed 0:00:00, ETA")
               for line in quick_lines), quick_lines
    assert quick_lines[-1] == "Building things: done in 0:00:00"


def test_a_short_phase_and_other_ranks_print_nothing(monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "_emit", lines.append)
    with PhaseProgress("Quick", 10) as phase:  # default delay: seconds
        phase.advance(10)
    monkeypatch.setattr(PhaseProgress, "delay", 0.0)
    with PhaseProgress("Elsewhere", 10, rank=3) as phase:
        phase.advance(5)
        time.sleep(0.1)
    assert lines == []


def test_one_numpy_call_still_gets_lines_from_the_thread(monkeypatch):
    lines = []
    monkeypatch.setattr(PhaseProgress, "delay", 0.0)
    monkeypatch.setattr(PhaseProgress, "interval", 0.02)
    with PhaseProgress("Shuffling", 20_000_000, emit=lines.append):
        time.sleep(0.3)  # stands for a shuffle that releases the GIL
    assert len(lines) >= 3 and "0.0% (0 / 20,000,000)" in lines[0]


def test_gpt_and_blend_index_builds_report_progress(tmp_path, quick_lines):
    a = write(str(tmp_path / "a"), [40] * 50)
    b = write(str(tmp_path / "b"), [25] * 60)
    BlendedMegatronDatasetBuilder(
        GPTDataset, [100, None, None], lambda: True,
        config(([a, b], [0.5, 0.5]), path_to_cache=str(tmp_path / "cache"))).build()
    text = "\n".join(quick_lines)
    for step in ("document index (shuffling", "sample index", "shuffle index (shuffling"):
        assert f"GPTDataset train indices of {a}: {step}" in text, text
    assert "BlendedDataset train indices (2 datasets): " in text and "(100 / 100 samples)" in text


def test_progress_does_not_change_the_indices(tmp_path, monkeypatch):
    prefix = write(str(tmp_path / "d"), list(range(3, 200)))
    whole = BlendedMegatronDatasetBuilder(GPTDataset, [900, None, None], lambda: True,
                                          config(([prefix], None))).build()[0]
    monkeypatch.setattr(helpers, "_SAMPLES_PER_CHUNK", 7)  # chunks of samples in the sample index
    chunked = BlendedMegatronDatasetBuilder(GPTDataset, [900, None, None], lambda: True,
                                            config(([prefix], None))).build()[0]
    numpy.testing.assert_array_equal(whole.sample_index, chunked.sample_index)


def test_an_empty_split_that_samples_are_asked_of_is_named(tmp_path, caplog):
    prefix = write(str(tmp_path / "d"), [40] * 50)
    caplog.set_level(logging.WARNING)
    built = BlendedMegatronDatasetBuilder(GPTDataset, [20, 8, 0], lambda: True,
                                          config(([prefix], None), split="100,0,0"))
    train, valid, test = built.build()
    assert valid is None and test is None and len(train) >= 20
    assert built.empty_splits == [Split.valid]  # test: no samples asked, nothing to say
    assert ("The valid split is empty: --split '100,0,0' gives it no share of the data, but 8 "
            "samples were requested from it.") in caplog.text
    assert "The test split is empty" not in caplog.text
    per_split = config(None, split=None, blend_per_split=[([prefix], None), None, None])
    assert requested_but_empty_splits(per_split, [5, 2, 3]) == [Split.valid, Split.test]
    assert requested_but_empty_splits(per_split, [5, None, 0]) == []  # None: no number asked
    assert requested_but_empty_splits(config(None, split=None, mock=True), [5, 5, 5]) == []


def test_a_split_shorter_than_one_sample(tmp_path, caplog):
    prefix = write(str(tmp_path / "tiny"), [5, 4])  # 9 tokens; a sample reads 17
    caplog.set_level(logging.WARNING)
    train = BlendedMegatronDatasetBuilder(GPTDataset, [3, None, None], lambda: True,
                                          config(([prefix], None))).build()[0]
    assert len(train) >= 3
    assert (f"The train split of {prefix} has only 9 tokens, fewer than the 17 that one sample of "
            "--seq-length 16 reads") in caplog.text
    with pytest.raises(DataError, match=f"The train split of {prefix} has 9 tokens, fewer than the 17 "
                                        "that one sample of --seq-length 16 reads, so it gives no sample"):
        BlendedMegatronDatasetBuilder(GPTDataset, [None, None, None], lambda: True,
                                      config(([prefix], None))).build()
