"""Mock GPT data: the Megatron Core quick-start path (seed script STEP 3) and megatron-core parity.

Run: python -m pytest -q tests/unit/test_mock_dataset.py
"""

import numpy
import pytest
import torch
from torch.utils.data import DataLoader

from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import (
    GPTDatasetConfig,
    MockGPTDataset,
    MockGPTLowLevelDataset,
)
from megatron.core.datasets.utils import Split
from tests.fixtures.gpt_dataset.checks import (
    EOD,
    FixtureTokenizer,
    assert_gpt_indices_match,
    assert_samples_match,
)


def quickstart_config(**overrides):
    """Exactly the config of the Megatron Core quick-start (a string tokenizer, blend=[])."""
    kwargs = dict(
        random_seed=0,
        sequence_length=64,
        blend=[],
        mock=True,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer="dummy",
    )
    kwargs.update(overrides)
    return GPTDatasetConfig(**kwargs)


def test_quickstart_mock_dataset_feeds_a_dataloader():
    training_data = MockGPTDataset(Split.train, quickstart_config())
    loader = DataLoader(training_data, batch_size=8, shuffle=True)
    batch = next(iter(loader))
    assert set(batch) == {"tokens", "labels", "attention_mask", "loss_mask", "position_ids"}
    assert batch["tokens"].shape == (8, 64) and batch["tokens"].dtype == torch.int64
    assert batch["labels"].shape == (8, 64)
    assert (
        batch["attention_mask"].shape == (8, 1, 64, 64)
        and batch["attention_mask"].dtype == torch.bool
    )
    assert batch["loss_mask"].dtype == torch.float32
    torch.testing.assert_close(batch["position_ids"], torch.arange(64).expand(8, 64))
    # Token ids stay below the sequence length: the quick-start's vocabulary of 100 works.
    assert int(batch["tokens"].max()) < 64 and int(batch["tokens"].min()) >= 0
    # Causal: a token sees itself and earlier tokens only (True = masked).
    assert not batch["attention_mask"][0, 0].diagonal().any()
    assert batch["attention_mask"][0, 0, 0, 1]
    assert len(training_data) == 32767


def test_quickstart_samples_are_megatron_core_05_samples():
    config = quickstart_config()
    train, valid = MockGPTDataset(Split.train, config), MockGPTDataset(config, Split.valid)
    sample = train[5]
    text = torch.cat([sample["tokens"], sample["labels"][-1:]])
    length = int(text[0])
    rng = numpy.random.default_rng(seed=[Split.train.value, 5])
    assert length == int(rng.integers(low=0, high=64))
    expected = [length] + [1] * length + [0] + [2] * (64 - length - 1)
    assert text.tolist() == expected
    torch.testing.assert_close(sample["labels"], text[1:])
    assert torch.equal(train[5]["tokens"], sample["tokens"])  # generated from (split, index)
    differs = [not torch.equal(train[i]["tokens"], valid[i]["tokens"]) for i in range(5)]
    assert any(differs)


def test_quickstart_eod_options_use_eod_zero():
    config = quickstart_config(reset_position_ids=True, eod_mask_loss=True)
    sample = MockGPTDataset(Split.train, config)[3]
    eod = int((sample["tokens"] == 0).nonzero()[0])
    assert sample["loss_mask"][eod] == 0 and sample["loss_mask"][:eod].eq(1).all()
    assert sample["position_ids"][eod + 1] == 0


def test_builder_mock_matches_megatron_core():
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=64,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer=FixtureTokenizer(EOD),
    )
    assert config.mock and config.split == "1,1,1"
    datasets = BlendedMegatronDatasetBuilder(
        MockGPTDataset, [100, 20, 20], lambda: True, config
    ).build()
    for split, dataset in zip(("train", "valid", "test"), datasets):
        assert_gpt_indices_match(dataset, f"mock/{split}")
        assert_samples_match(dataset, f"mock/{split}")


def test_full_signature_and_keyword_construction():
    config = quickstart_config(tokenizer=FixtureTokenizer(EOD))
    low_level = MockGPTLowLevelDataset(config.tokenizer)
    assert low_level.get(3).tolist() == list(range(1, int(low_level.sequence_lengths[3]))) + [EOD]
    indices = numpy.arange(1000, 2000, dtype=numpy.int32)
    positional = MockGPTDataset(low_level, None, indices, 50, Split.valid, config)
    keywords = MockGPTDataset(
        dataset=low_level,
        dataset_path=None,
        indices=indices,
        num_samples=50,
        index_split=Split.valid,
        config=config,
    )
    assert len(positional) >= 50
    numpy.testing.assert_array_equal(positional.shuffle_index, keywords.shuffle_index)
    assert torch.equal(positional[7]["tokens"], keywords[7]["tokens"])


def test_mock_requires_a_mock_config():
    config = GPTDatasetConfig(
        random_seed=0,
        sequence_length=8,
        blend=(["x"], None),
        split="1",
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        tokenizer="t",
    )
    with pytest.raises(ValueError, match="mock=True"):
        MockGPTDataset(MockGPTLowLevelDataset("t"), None, numpy.arange(10), 5, Split.train, config)
