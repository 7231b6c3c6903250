"""Megatron's pretraining samplers and the DataLoader built on them.

Every global batch holds micro_batch_size x data_parallel_size consecutive sample positions; data-
parallel rank r takes positions [r * mbs, (r + 1) * mbs) of each. `consumed_samples` (saved in
checkpoints) is where the stream resumes: a resumed run sees exactly the samples an uninterrupted
run would have seen next, with any number of loader worker processes (the samplers run in the
main process and the DataLoader returns batches in sampler order).

* single (MegatronPretrainingSampler): positions in order; shuffling already lives in the
  dataset's own shuffle index.
* cyclic (MegatronPretrainingRandomSampler): a fresh random order each epoch, from
  torch.randperm with a generator seeded by the epoch number, as Megatron does.
"""

import random
from typing import Any, Callable, Iterator, List, Optional

import numpy

from megatron.training.datasets.flags import with_declared_defaults


def _check_layout(micro_batch_size: int, data_parallel_rank: int, data_parallel_size: int) -> None:
    if micro_batch_size is None or micro_batch_size <= 0:
        raise ValueError(f"--micro-batch-size must be positive, got {micro_batch_size}")
    if data_parallel_size is None or data_parallel_size <= 0:
        raise ValueError(f"data-parallel size must be positive, got {data_parallel_size}")
    if not 0 <= data_parallel_rank < data_parallel_size:
        raise ValueError(
            f"data-parallel rank {data_parallel_rank} must be in [0, {data_parallel_size})"
        )


class MegatronPretrainingSampler:
    """Sequential batches of positions for one data-parallel rank (--dataloader-type single)."""

    def __init__(
        self,
        total_samples: int,
        consumed_samples: int,
        micro_batch_size: int,
        data_parallel_rank: int,
        data_parallel_size: int,
        drop_last: bool = True,
    ):
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.micro_batch_times_data_parallel_size = micro_batch_size * data_parallel_size
        self.drop_last = drop_last
        _check_layout(micro_batch_size, data_parallel_rank, data_parallel_size)
        if total_samples <= 0:
            raise ValueError(f"no sample to consume: the dataset has {total_samples} samples")
        if not 0 <= consumed_samples < total_samples:
            raise ValueError(
                f"no samples left to consume: {consumed_samples} of {total_samples} already "
                "consumed (the checkpoint's consumed samples reach past this dataset: build it "
                "with more samples, e.g. a larger --train-samples / --train-iters)"
            )

    def __len__(self) -> int:
        return self.total_samples

    def get_start_end_idx(self):
        start_idx = self.data_parallel_rank * self.micro_batch_size
        return start_idx, start_idx + self.micro_batch_size

    def __iter__(self) -> Iterator[List[int]]:
        start_idx, end_idx = self.get_start_end_idx()
        step = self.micro_batch_times_data_parallel_size
        batch_start = self.consumed_samples
        while batch_start + step <= self.total_samples:
            yield list(range(batch_start + start_idx, batch_start + end_idx))
            batch_start += step
        if batch_start < self.total_samples and not self.drop_last:
            # The last, partial global batch: this rank's share of it, if any.
            tail = list(range(batch_start, self.total_samples))[start_idx:end_idx]
            if tail:
                yield tail


class RandomSeedDataset:
    """Re-seeds torch, numpy and random before each sample (seed + epoch + index), so that
    random augmentations are reproducible; set_epoch changes the offset."""

    def __init__(self, dataset, seed: int):
        self.base_seed = seed
        self.curr_seed = seed
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.curr_seed = self.base_seed + epoch

    def __getitem__(self, idx):
        import torch

        seed = idx + self.curr_seed
        torch.manual_seed(seed)
        random.seed(seed)
        numpy.random.seed(seed)
        return self.dataset[idx]


class MegatronPretrainingRandomSampler:
    """Per-epoch random batches for one data-parallel rank (--dataloader-type cyclic)."""

    def __init__(
        self,
        dataset,
        total_samples: int,
        consumed_samples: int,
        micro_batch_size: int,
        data_parallel_rank: int,
        data_parallel_size: int,
        data_sharding: bool,
    ):
        self.dataset = dataset
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.data_sharding = data_sharding
        self.micro_batch_times_data_parallel_size = micro_batch_size * data_parallel_size
        self.last_batch_size = total_samples % self.micro_batch_times_data_parallel_size
        _check_layout(micro_batch_size, data_parallel_rank, data_parallel_size)
        if total_samples < self.micro_batch_times_data_parallel_size:
            raise ValueError(
                f"the dataset has {total_samples} samples, fewer than one global batch of "
                f"{self.micro_batch_times_data_parallel_size} (micro batch x data parallel)"
            )

    def __len__(self) -> int:
        return self.total_samples

    def __iter__(self) -> Iterator[List[int]]:
        import torch

        active_total_samples = self.total_samples - self.last_batch_size
        self.epoch = self.consumed_samples // active_total_samples
        current_epoch_samples = self.consumed_samples % active_total_samples
        if current_epoch_samples % self.micro_batch_times_data_parallel_size != 0:
            raise ValueError(
                f"consumed samples {self.consumed_samples} do not fall on a global-batch boundary "
                f"({self.micro_batch_times_data_parallel_size} samples)"
            )
        if isinstance(self.dataset, RandomSeedDataset):
            self.dataset.set_epoch(self.epoch)

        generator = torch.Generator()
        generator.manual_seed(self.epoch)
        if self.data_sharding:
            # Each rank draws from its own contiguous bucket of the dataset.
            bucket_size = (
                self.total_samples // self.micro_batch_times_data_parallel_size
            ) * self.micro_batch_size
            bucket_offset = current_epoch_samples // self.data_parallel_size
            start_idx = self.data_parallel_rank * bucket_size
            random_idx = torch.randperm(bucket_size, generator=generator).tolist()
            idx_range = [start_idx + x for x in random_idx[bucket_offset:]]
        else:
            full_bucket_size = (self.total_samples // self.micro_batch_size) * self.micro_batch_size
            idx_range_total = torch.randperm(full_bucket_size, generator=generator).tolist()
            idx_range_active = idx_range_total[current_epoch_samples:]
            idx_range = idx_range_active[self.data_parallel_rank :: self.data_parallel_size]

        batch = []
        for idx in idx_range:
            batch.append(idx)
            if len(batch) == self.micro_batch_size:
                self.consumed_samples += self.micro_batch_times_data_parallel_size
                yield batch
                batch = []


def _global_args():
    try:
        from megatron.training import get_args  # the driver's parsed arguments, if any
    except ImportError:
        return None
    try:
        return get_args()
    except Exception:  # noqa: BLE001 - not initialised: behave as without a driver
        return None


def _data_parallel_layout():
    """(rank, size) from megatron.core.parallel_state when it is initialised, else (0, 1)."""
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        return (
            parallel_state.get_data_parallel_rank(),
            parallel_state.get_data_parallel_world_size(),
        )
    return 0, 1


def build_pretraining_data_loader(
    dataset,
    consumed_samples: int,
    *,
    micro_batch_size: Optional[int] = None,
    data_parallel_rank: Optional[int] = None,
    data_parallel_size: Optional[int] = None,
    dataloader_type: Optional[str] = None,
    num_workers: Optional[int] = None,
    data_sharding: Optional[bool] = None,
    full_validation: Optional[bool] = None,
    drop_last: bool = True,
    seed: Optional[int] = None,
    pin_memory: Optional[bool] = None,
    collate_fn: Optional[Callable] = None,
    args: Any = None,
):
    """A torch DataLoader over `dataset` for this data-parallel rank, resuming at consumed_samples.

    Keywords left None come from `args` (or the driver's global arguments: --micro-batch-size,
    --dataloader-type, --num-workers, --full-validation, --seed) and the data-
    parallel layout from megatron.core.parallel_state (rank 0 of 1 when it is not initialised).
    dataloader_type 'external' returns the dataset unchanged. `seed` seeds the loader's worker
    processes, so any randomness inside them repeats across runs.
    """
    if dataset is None:
        return None
    import torch

    args = args if args is not None else _global_args()
    # A partial namespace (a script's few flags) gets the declared defaults for the others.
    flags = with_declared_defaults(args) if args is not None else None

    def setting(value, name, default):
        if value is not None:
            return value
        from_flags = getattr(flags, name) if flags is not None else None
        return default if from_flags is None else from_flags

    micro_batch_size = setting(micro_batch_size, "micro_batch_size", None)
    if micro_batch_size is None:
        raise ValueError(
            "build_pretraining_data_loader needs micro_batch_size (--micro-batch-size)"
        )
    if data_parallel_rank is None or data_parallel_size is None:
        rank, size = _data_parallel_layout()
        data_parallel_rank = rank if data_parallel_rank is None else data_parallel_rank
        data_parallel_size = size if data_parallel_size is None else data_parallel_size
    dataloader_type = setting(dataloader_type, "dataloader_type", "single")
    num_workers = setting(num_workers, "num_workers", 2)
    # No flag declares it here (Megatron-LM's --no-data-sharding sits among its vision flags):
    # the keyword alone turns it off.
    data_sharding = True if data_sharding is None else data_sharding
    full_validation = setting(full_validation, "full_validation", False)
    seed = setting(seed, "seed", None)

    split = getattr(dataset, "split", getattr(dataset, "index_split", None))
    split_name = getattr(split, "name", None)
    if split_name == "valid" and full_validation:
        batch_sampler = MegatronPretrainingSampler(
            len(dataset), 0, micro_batch_size, data_parallel_rank, data_parallel_size
        )
    elif dataloader_type == "single":
        batch_sampler = MegatronPretrainingSampler(
            len(dataset),
            consumed_samples,
            micro_batch_size,
            data_parallel_rank,
            data_parallel_size,
            drop_last=drop_last,
        )
    elif dataloader_type == "cyclic":
        batch_sampler = MegatronPretrainingRandomSampler(
            dataset,
            len(dataset),
            consumed_samples,
            micro_batch_size,
            data_parallel_rank,
            data_parallel_size,
            data_sharding,
        )
    elif dataloader_type == "external":
        return dataset
    else:
        raise ValueError(
            f"--dataloader-type {dataloader_type!r} is not supported: use single, cyclic or "
            "external"
        )

    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    extra = {"collate_fn": collate_fn} if collate_fn is not None else {}
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=generator,
        **extra,
    )
