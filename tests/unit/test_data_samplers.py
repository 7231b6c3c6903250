"""Megatron's pretraining samplers and loaders: data-parallel slicing, exact resume, workers.

Run: python -m pytest -q tests/unit/test_data_samplers.py
"""

from itertools import islice
from types import SimpleNamespace

import pytest
import torch

from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.training.datasets.data_samplers import (
    MegatronPretrainingRandomSampler,
    MegatronPretrainingSampler,
    build_pretraining_data_loader,
)
from tests.fixtures.gpt_dataset.checks import case_config, copy_fixture_data


def test_single_sampler_slices_each_global_batch_by_rank():
    mbs, dp, total = 3, 2, 20
    per_rank = [list(MegatronPretrainingSampler(total, 0, mbs, rank, dp)) for rank in range(dp)]
    # Global batch g = positions [6g, 6g + 6): rank 0 gets the first 3, rank 1 the next 3.
    assert per_rank[0] == [[0, 1, 2], [6, 7, 8], [12, 13, 14]]
    assert per_rank[1] == [[3, 4, 5], [9, 10, 11], [15, 16, 17]]
    # The partial last global batch (18, 19) is dropped, or split by rank without drop_last.
    assert list(MegatronPretrainingSampler(total, 0, mbs, 0, dp, drop_last=False))[-1] == [18, 19]
    assert list(MegatronPretrainingSampler(total, 0, mbs, 1, dp, drop_last=False))[-1] == [
        15,
        16,
        17,
    ]


def test_single_sampler_resumes_exactly():
    mbs, dp, total = 4, 3, 200
    for rank in range(dp):
        full = list(MegatronPretrainingSampler(total, 0, mbs, rank, dp))
        for batches_done in (1, 5, 11):
            resumed = list(
                MegatronPretrainingSampler(total, batches_done * mbs * dp, mbs, rank, dp)
            )
            assert resumed == full[batches_done:]


def test_single_sampler_errors():
    with pytest.raises(ValueError, match="no samples left to consume"):
        MegatronPretrainingSampler(10, 10, 2, 0, 1)
    with pytest.raises(ValueError, match="no sample to consume"):
        MegatronPretrainingSampler(0, 0, 2, 0, 1)
    with pytest.raises(ValueError, match="data-parallel rank 2"):
        MegatronPretrainingSampler(10, 0, 2, 2, 2)


def _epoch_order(total, mbs, epoch):
    generator = torch.Generator()
    generator.manual_seed(epoch)
    return torch.randperm((total // mbs) * mbs, generator=generator).tolist()


def test_cyclic_sampler_is_seeded_by_epoch_and_resumes():
    total, mbs, dp = 50, 2, 2
    for rank in range(dp):
        sampler = MegatronPretrainingRandomSampler(
            None, total, 0, mbs, rank, dp, data_sharding=False
        )
        epoch0 = list(sampler)
        # Megatron's order: a randperm seeded with the epoch, dealt round-robin to the ranks.
        expected = _epoch_order(total, mbs, 0)[rank::dp]
        assert [i for batch in epoch0 for i in batch] == expected[: len(epoch0) * mbs]
        # The sampler counted what it gave out; iterating again starts epoch 1.
        assert sampler.consumed_samples == len(epoch0) * mbs * dp
        epoch1 = list(sampler)
        assert [i for batch in epoch1 for i in batch] == _epoch_order(total, mbs, 1)[rank::dp][
            : len(epoch1) * mbs
        ]
        for done in (1, 4):
            resumed = MegatronPretrainingRandomSampler(
                None, total, done * mbs * dp, mbs, rank, dp, False
            )
            assert list(resumed) == epoch0[done:]


def test_cyclic_sampler_with_data_sharding_stays_in_the_rank_bucket():
    total, mbs, dp = 48, 3, 2
    bucket = (total // (mbs * dp)) * mbs
    for rank in range(dp):
        batches = list(MegatronPretrainingRandomSampler(None, total, 0, mbs, rank, dp, True))
        seen = sorted(i for batch in batches for i in batch)
        assert seen == list(range(rank * bucket, (rank + 1) * bucket))
        resumed = list(
            MegatronPretrainingRandomSampler(None, total, 2 * mbs * dp, mbs, rank, dp, True)
        )
        assert resumed == batches[2:]


@pytest.fixture(scope="module")
def gpt_train_dataset(tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(copy_fixture_data(tmp_path_factory.mktemp("data")))
    try:
        sizes, config = case_config("single_two_splits")
        train, _, _ = BlendedMegatronDatasetBuilder(
            GPTDataset, sizes, lambda: True, GPTDatasetConfig(**config)
        ).build()
    finally:
        os.chdir(cwd)
    return train


def _batches(loader, count):
    return [{k: v.clone() for k, v in batch.items()} for batch in islice(loader, count)]


@pytest.mark.parametrize("dataloader_type", ["single", "cyclic"])
def test_loader_resume_is_exact_with_worker_processes(gpt_train_dataset, dataloader_type):
    common = dict(
        micro_batch_size=4,
        data_parallel_rank=1,
        data_parallel_size=2,
        dataloader_type=dataloader_type,
        seed=1234,
    )
    uninterrupted = _batches(
        build_pretraining_data_loader(gpt_train_dataset, 0, num_workers=2, **common), 8
    )
    in_process = _batches(
        build_pretraining_data_loader(gpt_train_dataset, 0, num_workers=0, **common), 8
    )
    resumed = _batches(
        build_pretraining_data_loader(gpt_train_dataset, 3 * 4 * 2, num_workers=2, **common), 5
    )
    for a, b in zip(uninterrupted, in_process):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for a, b in zip(uninterrupted[3:], resumed):
        assert set(a) == {"tokens", "labels", "attention_mask", "loss_mask", "position_ids"}
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_loader_settings_from_args_and_errors(gpt_train_dataset):
    args = SimpleNamespace(micro_batch_size=2, dataloader_type="single", num_workers=0)
    loader = build_pretraining_data_loader(gpt_train_dataset, 0, args=args)
    first = next(iter(loader))
    assert first["tokens"].shape == (2, 32)
    assert torch.equal(first["tokens"][1], gpt_train_dataset[1]["tokens"])
    assert (
        build_pretraining_data_loader(gpt_train_dataset, 0, args=args, dataloader_type="external")
        is gpt_train_dataset
    )
    assert build_pretraining_data_loader(None, 0) is None
    with pytest.raises(ValueError, match="--dataloader-type 'shuffled'"):
        build_pretraining_data_loader(gpt_train_dataset, 0, args=args, dataloader_type="shuffled")
    with pytest.raises(ValueError, match="micro_batch_size"):
        build_pretraining_data_loader(gpt_train_dataset, 0, args=SimpleNamespace())
