"""BlendedDataset: samples drawn from several MegatronDatasets in fixed proportions.

Sample s comes from dataset `dataset_index[s]` (int16), which gives its sample number
`dataset_sample_index[s]` (int64). The order is Megatron's deterministic greedy (helpers.py); all
shuffling comes from each component's own shuffle index. The indices are cached (when a cache path
is set) as `{md5}-BlendedDataset-{split}-dataset_index.npy` / `-dataset_sample_index.npy`.
"""

import logging
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy

from megatron.core.datasets import helpers
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.index_cache import IndexCache
from megatron.core.datasets.megatron_dataset import MegatronDataset, describe, md5_hex
from megatron.core.datasets.progress import PhaseProgress
from megatron.core.datasets.utils import log_single_rank, normalize

logger = logging.getLogger(__name__)

_MAX_DATASETS = 32767  # dataset_index is int16


class BlendedDataset:
    """Blend `datasets` by `weights`.

    Args:
        datasets: the components, all of one class and one split.
        weights: relative weights (normalised here) when `size` is given; without `size`, the
            exact number of samples to take from each component (exhaustive blending).
        size: number of samples of the blend, or None.
        config: the dataset config (its path_to_cache is used).
    """

    def __init__(
        self,
        datasets: List[MegatronDataset],
        weights: List[Union[int, float]],
        size: Optional[int],
        config: BlendedMegatronDatasetConfig,
    ) -> None:
        _check_components(datasets, weights, size)
        if len(datasets) == 1:
            log_single_rank(
                logger, logging.WARNING, "Building a BlendedDataset for a single MegatronDataset"
            )
        if size is not None:
            weights = normalize(weights)

        self.datasets = datasets
        self.split = datasets[0].index_split
        self.weights = weights
        self.size = size
        self.config = config

        unique_identifiers = OrderedDict()
        unique_identifiers["class"] = type(self).__name__
        unique_identifiers["datasets"] = [dataset.unique_identifiers for dataset in datasets]
        unique_identifiers["split"] = self.split.name
        unique_identifiers["weights"] = self.weights
        unique_identifiers["size"] = self.size
        self.unique_identifiers = unique_identifiers
        self.unique_description = describe(unique_identifiers)
        self.unique_description_hash = md5_hex(self.unique_description)

        self.dataset_index, self.dataset_sample_index = self._build_indices()

    def __len__(self) -> int:
        return self.dataset_index.shape[0]

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        dataset_id = self.dataset_index[idx]
        dataset_sample_id = self.dataset_sample_index[idx]
        return {"dataset_id": dataset_id, **self.datasets[dataset_id][dataset_sample_id]}

    def _total(self) -> int:
        return self.size if self.size is not None else int(sum(self.weights))

    def _build_indices(self) -> Tuple[numpy.ndarray, numpy.ndarray]:
        total = self._total()
        expectations = {
            "dataset_index": ([numpy.int16], (total,)),
            "dataset_sample_index": ([numpy.int64], (total,)),
        }
        cache = None
        if self.config.path_to_cache:
            cache = IndexCache(
                self.config.path_to_cache,
                self.unique_description_hash,
                type(self).__name__,
                self.split.name,
            )
            cached = cache.load(self.unique_description, expectations)
            if cached is not None:
                log_single_rank(logger, logging.INFO, f"Load the {type(self).__name__} indices")
                return cached["dataset_index"], cached["dataset_sample_index"]

        log_single_rank(logger, logging.INFO, f"Build and save the {type(self).__name__} indices")
        t_beg = time.time()
        dataset_index = numpy.zeros(total, dtype=numpy.int16)
        dataset_sample_index = numpy.zeros(total, dtype=numpy.int64)
        what = f"{type(self).__name__} {self.split.name} indices ({len(self.datasets)} datasets)"
        with PhaseProgress(what, total, "samples") as progress:
            if self.size is not None:
                helpers.build_blending_indices(
                    dataset_index, dataset_sample_index, self.weights, len(self.datasets), total,
                    False, progress=progress.advance,
                )
            else:
                helpers.build_exhaustive_blending_indices(
                    dataset_index,
                    dataset_sample_index,
                    numpy.array(self.weights, dtype=numpy.int64),
                    len(self.datasets),
                    progress=progress.advance,
                )
        self._check_not_oversampled(dataset_index)

        if cache is not None:
            cache.save(
                self.unique_description,
                {"dataset_index": dataset_index, "dataset_sample_index": dataset_sample_index},
            )
        log_single_rank(
            logger, logging.DEBUG, f"\t> time elapsed: {time.time() - t_beg:4f} seconds"
        )
        return dataset_index, dataset_sample_index

    def _check_not_oversampled(self, dataset_index: numpy.ndarray) -> None:
        counts = numpy.bincount(dataset_index.astype(numpy.int64), minlength=len(self.datasets))
        for i, (dataset, wanted) in enumerate(zip(self.datasets, counts)):
            if wanted > len(dataset):
                raise IndexError(
                    f"The {self.split.name} blend requests {wanted} samples from dataset {i} "
                    f"({getattr(dataset, 'dataset_path', None) or type(dataset).__name__}), which "
                    f"has only {len(dataset)}. Increase mid_level_dataset_surplus "
                    f"(--mid-level-dataset-surplus, now {self.config.mid_level_dataset_surplus}), "
                    "e.g. two- or ten-fold, so that each component builds enough samples."
                )


def _check_components(datasets, weights, size) -> None:
    if len(datasets) == 0:
        raise ValueError("BlendedDataset needs at least one dataset")
    if len(datasets) != len(weights):
        raise ValueError(f"BlendedDataset got {len(datasets)} datasets but {len(weights)} weights")
    if len(datasets) >= _MAX_DATASETS:
        raise ValueError(
            f"BlendedDataset blends at most {_MAX_DATASETS - 1} datasets, got {len(datasets)}"
        )
    if any(type(d) is not type(datasets[0]) for d in datasets):
        raise ValueError("BlendedDataset components must all be of one class")
    if any(d.index_split != datasets[0].index_split for d in datasets):
        raise ValueError("BlendedDataset components must all belong to one split")
    for i, weight in enumerate(weights):
        if not weight > 0:
            path = getattr(datasets[i], "dataset_path", None) or f"dataset {i}"
            raise ValueError(
                f"blend weight of {path} is {weight}; weights must be > 0 (a split that got no "
                "samples from a dataset): drop the dataset from the blend or give it data"
            )
    if size is None and any(float(w) != int(w) for w in weights):
        raise ValueError(
            "BlendedDataset without a size takes weights as sample counts, which must be whole "
            f"numbers; got {list(weights)}"
        )
