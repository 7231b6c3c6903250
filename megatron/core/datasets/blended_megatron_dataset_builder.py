"""BlendedMegatronDatasetBuilder: the train/valid/test datasets of a config, on every rank.

Which dataset each split gets (as in Megatron Core):
* mock config: one mock dataset per split;
* `blend` with one prefix and no weights: one GPTDataset (say) per split;
* `blend` with several prefixes: one mid-level dataset per prefix and split, blended by the
  weights (each component builds ceil(ceil(N * w) * (1 + surplus)) samples) or, without weights,
  by the components' sizes (capped at the requested size; all of them when no size is given);
* `blend_per_split`: the same per split from its own blend, with each prefix entirely in it.

Distributed: dataset index files are written by one process and read by the others. Global rank 0
builds first; then one rank per node (local rank 0) builds, which only loads when the cache is on
a shared file system and computes the indices itself when the cache path is node-local; then the
remaining ranks load what their node's leader wrote. Without torch.distributed, everything is
simply built. Cache files are written atomically, so even ranks (or jobs) that race are safe.
"""

import functools
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, List, Optional, Type, Union

import numpy

from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.megatron_dataset import LowLevelDataset, MegatronDataset
from megatron.core.datasets.split_checks import warn_requested_but_empty
from megatron.core import errors
from megatron.core.datasets.utils import (
    Split,
    initialized_torch_distributed,
    log_single_rank,
    normalize,
)

logger = logging.getLogger(__name__)

MidLevelDataset = MegatronDataset
TopLevelDataset = Union[BlendedDataset, MidLevelDataset]
DistributedDataset = Union[TopLevelDataset, MidLevelDataset, LowLevelDataset]


def _build_phase() -> int:
    """0: global rank 0; 1: the first rank of another node; 2: every other rank."""
    dist = initialized_torch_distributed()
    if dist is None or dist.get_rank() == 0:
        return 0
    local_rank = os.environ.get("LOCAL_RANK")
    # Without LOCAL_RANK we cannot tell nodes apart: every rank checks (and may build) itself.
    return 1 if local_rank is None or int(local_rank) == 0 else 2


def run_in_build_phases(build: Callable[[], Any], synchronize_ranks: bool = True) -> Any:
    """Call build() on every rank in the order rank 0, node leaders, others (with barriers)."""
    dist = initialized_torch_distributed()
    if dist is None or not synchronize_ranks:
        return build()
    my_phase = _build_phase()
    result, failure = None, None
    for phase in range(3):
        if phase == my_phase:
            try:
                result = build()
            except Exception as error:  # noqa: BLE001 - re-raised after the barriers
                failure = error
        if phase < 2:
            # Reach the barriers even after a failure, so that the other ranks do not hang.
            dist.barrier()
    _raise_if_any_rank_failed(dist, failure)
    return result


def _reraise(error: BaseException) -> None:
    raise error


def _raise_if_any_rank_failed(dist, failure: Optional[BaseException]) -> None:
    """Every rank learns whether one failed, and then raises too: a rank that went on would wait
    in the next collective for one that stopped (only some ranks read data, e.g. TP rank 0). A bad
    input (a UserError) is raised alike everywhere, so that it is reported once."""
    mine = None if failure is None else (type(failure).__name__, str(failure), dist.get_rank())
    reports = [None] * dist.get_world_size()
    dist.all_gather_object(reports, mine)
    first = next((report for report in reports if report is not None), None)
    if first is None:
        return
    name, message, rank = first
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.UserError):
        raised = failure if isinstance(failure, kind) and str(failure) == message else kind(message)
        raised.same_on_every_rank = True
        if raised is failure:
            raise failure
        raise raised from None
    if failure is not None:
        raise failure
    raise RuntimeError(f"rank {rank} failed while building the datasets ({name}: {message}); its "
                       "traceback is in its own output")


class BlendedMegatronDatasetBuilder:
    """Builds the datasets of every split.

    Args:
        cls: the mid-level dataset class (GPTDataset, MockGPTDataset, ...).
        sizes: samples wanted per split (train, valid, test); None: one epoch (unweighted only).
        is_built_on_rank: returns True where this rank needs the datasets (e.g. TP rank 0 of the
            first and last pipeline stages); other ranks get None but join the barriers.
        config: what to build.
    """

    def __init__(
        self,
        cls: Type[MidLevelDataset],
        sizes: List[Optional[int]],
        is_built_on_rank: Callable[[], bool],
        config: BlendedMegatronDatasetConfig,
    ):
        self.cls = cls
        self.sizes = list(sizes)
        self.is_built_on_rank = is_built_on_rank
        self.config = config
        if len(self.sizes) != len(Split):
            raise ValueError(
                f"sizes must give {len(Split)} sample counts (train, valid, test), got {sizes}"
            )
        log_single_rank(
            logger,
            logging.INFO,
            f"Building {cls.__name__} splits with sizes={self.sizes} and config={self.config}",
        )
        if not config.mock:
            self._check_sizes_and_weights()

    def _check_sizes_and_weights(self) -> None:
        for split in Split:
            if self.sizes[split.value] is not None:
                continue
            if self.config.blend_per_split is None:
                has_data = self.config.split_matrix[split.value] is not None
                weights = self.config.blend[1]
            else:
                blend = self.config.blend_per_split[split.value]
                has_data, weights = blend is not None, blend[1] if blend else None
            if has_data and weights is not None:
                raise ValueError(
                    f"The {split.name} split has blend weights but no sample count: weighted "
                    "blends need a size for every split that has data (e.g. multiple validation "
                    "sets must not have weights)"
                )

    def build(self) -> List[Optional[TopLevelDataset]]:
        """The dataset (or None) of each split; call on every rank. A split that samples are
        asked of but that gets no data is a warning naming it (split_checks.py)."""
        self.empty_splits = warn_requested_but_empty(self.config, self.sizes)
        datasets = self._build_blended_dataset_splits()
        for dataset in datasets:
            if isinstance(dataset, BlendedDataset) and dataset.size is not None:
                if len(dataset) != dataset.size:
                    raise RuntimeError(f"blend has {len(dataset)} samples, expected {dataset.size}")
            elif isinstance(dataset, MegatronDataset) and dataset.num_samples is not None:
                if len(dataset) < dataset.num_samples:
                    raise RuntimeError(
                        f"{type(dataset).__name__} {dataset.index_split.name} has {len(dataset)} "
                        f"samples, fewer than the {dataset.num_samples} requested"
                    )
        return datasets

    def _build_blended_dataset_splits(self) -> List[Optional[TopLevelDataset]]:
        if self.config.mock:
            return self._build_megatron_dataset_splits(None, self.config.split_matrix, self.sizes)
        if self.config.blend:
            return self._build_from_one_blend()
        return self._build_per_split()

    def _build_from_one_blend(self) -> List[Optional[TopLevelDataset]]:
        prefixes, weights = self.config.blend
        split = self.config.split_matrix
        if len(prefixes) == 1 and weights is None:
            return self._build_megatron_dataset_splits(prefixes[0], split, self.sizes)
        if weights is not None:
            weights = normalize(weights)
            targets = _get_size_per_split_per_dataset(weights, self.sizes)
            buffers = _get_size_per_split_per_dataset(
                weights, self.sizes, surplus=self.config.mid_level_dataset_surplus
            )
        else:
            buffers = [[None for _ in Split] for _ in prefixes]
        megatron_datasets = self._build_megatron_datasets_parallel(prefixes, split, buffers)

        blended = [None] * len(Split)
        for i in range(len(Split)):
            if split[i] is None:
                continue
            if weights is not None:
                weights_i, size_i = weights, sum(target[i] for target in targets)
            else:
                weights_i, size_i = self._size_weights(
                    megatron_datasets[i], prefixes, self.sizes[i]
                )
            blended[i] = self.build_generic_dataset(
                BlendedDataset,
                self.is_built_on_rank,
                True,
                megatron_datasets[i],
                weights_i,
                size_i,
                self.config,
            )
        return blended

    def _build_per_split(self) -> List[Optional[TopLevelDataset]]:
        blended = [None] * len(Split)
        for i in range(len(Split)):
            blend = self.config.blend_per_split[i]
            if blend is None:
                continue
            prefixes, weights = blend
            split_spoof = [None] * len(Split)
            split_spoof[i] = (0.0, 1.0)
            sizes_spoof = [0] * len(Split)
            sizes_spoof[i] = self.sizes[i]

            if len(prefixes) == 1:
                blended[i] = self._build_megatron_dataset_splits(
                    prefixes[0], split_spoof, sizes_spoof
                )[i]
                continue
            if self.config.multiple_validation_sets and i == Split.valid.value:
                blended[i] = [
                    self._build_megatron_dataset_splits(prefix, split_spoof, sizes_spoof)[i]
                    for prefix in prefixes
                ]
                continue
            if weights is not None:
                weights = normalize(weights)
                targets = _get_size_per_split_per_dataset(weights, sizes_spoof)
                buffers = _get_size_per_split_per_dataset(
                    weights, sizes_spoof, surplus=self.config.mid_level_dataset_surplus
                )
            else:
                buffers = [[None for _ in Split] for _ in prefixes]
            megatron_datasets = self._build_megatron_datasets_parallel(
                prefixes, split_spoof, buffers
            )[i]
            if weights is not None:
                weights_i, size_i = weights, sum(target[i] for target in targets)
            else:
                weights_i, size_i = self._size_weights(megatron_datasets, prefixes, self.sizes[i])
            blended[i] = self.build_generic_dataset(
                BlendedDataset,
                self.is_built_on_rank,
                True,
                megatron_datasets,
                weights_i,
                size_i,
                self.config,
            )
        return blended

    @staticmethod
    def _size_weights(datasets, prefixes, requested):
        """Unweighted blend: weights are the components' lengths; size capped by their sum."""
        if any(d is None for d in datasets):  # not built on this rank
            return [0 for _ in prefixes], None
        weights = [len(d) for d in datasets]
        size = None if requested is None else min(requested, sum(weights))
        return weights, size

    def _build_megatron_datasets_parallel(
        self, prefixes: List[str], split, sizes_per_dataset: List[List[Optional[int]]]
    ) -> List[List[Optional[MegatronDataset]]]:
        """For each split, the mid-level dataset of each prefix (built on a thread pool)."""

        def build_all():
            per_split = [[None] * len(prefixes) for _ in Split]
            workers = max(1, int(self.config.num_dataset_builder_threads))
            with ThreadPoolExecutor(max_workers=workers) as executor:
                futures = [
                    executor.submit(
                        self._build_megatron_dataset_splits,
                        prefix,
                        split,
                        sizes_per_dataset[j],
                        False,
                    )
                    for j, prefix in enumerate(prefixes)
                ]
                for j, future in enumerate(futures):
                    for i, dataset in enumerate(future.result()):
                        per_split[i][j] = dataset
            return per_split

        return run_in_build_phases(build_all)

    def _build_megatron_dataset_splits(
        self,
        dataset_path: Optional[str],
        split: List[Optional[tuple]],
        sizes: List[Optional[int]],
        synchronize_ranks: bool = True,
    ) -> List[Optional[MidLevelDataset]]:
        """The mid-level dataset of each split of one low-level dataset."""
        if initialized_torch_distributed() is not None and not self.is_built_on_rank():
            for i in range(len(Split)):
                if split[i] is not None:
                    run_in_build_phases(lambda: None, synchronize_ranks)
            return [None] * len(Split)

        try:
            low_level_dataset = self.cls.build_low_level_dataset(dataset_path, self.config)
        except Exception as error:
            # The other ranks are about to enter this prefix's build phases: meet them there
            # and fail together (a damaged .idx is found on the ranks that read data only).
            if synchronize_ranks and initialized_torch_distributed() is not None and any(split):
                run_in_build_phases(functools.partial(_reraise, error), synchronize_ranks)
            raise
        num_elements = self.cls.numel_low_level_dataset(low_level_dataset)
        datasets = []
        for i, split_name in enumerate(Split):
            if split[i] is None:
                datasets.append(None)
                continue
            beg = int(round(split[i][0] * float(num_elements)))
            end = int(round(split[i][1] * float(num_elements)))
            indices = numpy.arange(beg, end, dtype=numpy.int32)
            datasets.append(
                self.build_generic_dataset(
                    self.cls,
                    self.is_built_on_rank,
                    synchronize_ranks,
                    low_level_dataset,
                    dataset_path,
                    indices,
                    sizes[i],
                    split_name,
                    self.config,
                )
            )
        return datasets

    @staticmethod
    def build_generic_dataset(
        cls: Union[Type[DistributedDataset], Callable],
        is_built_on_rank: Callable[[], bool],
        synchronize_ranks: bool,
        *args: Any,
    ) -> Optional[Union[DistributedDataset, Iterable]]:
        """cls(*args) on the ranks that build, in the rank-0 / node-leader / other order."""

        def build():
            if not is_built_on_rank():
                return None
            try:
                return cls(*args)
            except OSError as error:
                raise RuntimeError(
                    f"Failed to build {getattr(cls, '__name__', cls)}: {error}. If the data cache "
                    "directory is the problem, give a writable one (--data-cache-path / "
                    "path_to_cache)."
                ) from error

        return run_in_build_phases(build, synchronize_ranks)


def _get_size_per_split_per_dataset(
    normalized_weights: List[float],
    target_size_per_split: List[Optional[int]],
    surplus: float = 0.0,
) -> List[List[int]]:
    """Samples to take (surplus 0) or build (with surplus) from each dataset for each split."""
    if not numpy.isclose(sum(normalized_weights), 1.0):
        raise ValueError(f"blend weights must be normalised, got {normalized_weights}")
    return [
        [
            int(math.ceil(math.ceil((target_size or 0) * weight) * (1 + surplus)))
            for target_size in target_size_per_split
        ]
        for weight in normalized_weights
    ]
