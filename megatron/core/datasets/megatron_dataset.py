"""MegatronDataset: the base of the mid-level datasets (GPTDataset, ...), and its identity.

The identity is a JSON "unique description" of everything that determines the dataset's indices
(class, data path, sample count, split, seed, sequence length, split string, split matrix,
tokenizer identifiers); its MD5 names the cache files. Both are byte-for-byte Megatron's, so a
cache directory is shared with Megatron-LM runs of the same configuration.

The class is a plain map-style dataset (`__len__` / `__getitem__`), which is all torch's
DataLoader needs; it does not derive from torch.utils.data.Dataset so that building indices
does not import torch.
"""

import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy

from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.utils import Split

LowLevelDataset = Union["IndexedDataset", Iterable]  # noqa: F821 (string: no import needed)


def identifiers_of(value: Any) -> Any:
    """JSON fallback: objects (tokenizers, datasets) describe themselves by unique_identifiers."""
    identifiers = getattr(value, "unique_identifiers", None)
    if identifiers is not None:
        return identifiers
    if isinstance(value, numpy.generic):
        return value.item()
    # Anything else is described by its class only: never by a repr with a memory address,
    # which would change the cache name from run to run.
    return {"class": type(value).__name__}


def describe(identifiers: Dict[str, Any]) -> str:
    return json.dumps(identifiers, indent=4, default=identifiers_of)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class MegatronDataset(ABC):
    """A dataset over (a split of) one low-level dataset.

    Args:
        dataset: the low-level dataset (an IndexedDataset, or the mock one).
        dataset_path: its path prefix (bookkeeping; part of the description).
        indices: the low-level element ids (for GPT: sequence ids) this split exposes.
        num_samples: how many samples to build at least; None: one epoch.
        index_split: which split this is.
        config: the dataset config.
    """

    def __init__(
        self,
        dataset: LowLevelDataset,
        dataset_path: Optional[str],
        indices: numpy.ndarray,
        num_samples: Optional[int],
        index_split: Split,
        config: BlendedMegatronDatasetConfig,
    ) -> None:
        self.dataset = dataset
        self.dataset_path = dataset_path
        self.indices = indices
        self.num_samples = num_samples
        self.index_split = index_split
        self.config = config

        self.unique_identifiers = OrderedDict()
        self.unique_identifiers["class"] = type(self).__name__
        self.unique_identifiers["dataset_path"] = self.dataset_path
        self.unique_identifiers["num_samples"] = self.num_samples
        self.unique_identifiers["index_split"] = self.index_split.name
        for attr in self._key_config_attributes():
            self.unique_identifiers[attr] = getattr(self.config, attr)
        self.unique_identifiers.update(self._extra_identifiers())

        self.unique_description = describe(self.unique_identifiers)
        self.unique_description_hash = md5_hex(self.unique_description)

    @staticmethod
    def numel_low_level_dataset(low_level_dataset: LowLevelDataset) -> int:
        """How many elements the split fractions divide (GPT: sequences; BERT: documents)."""
        raise NotImplementedError

    @staticmethod
    def build_low_level_dataset(
        dataset_path: str, config: BlendedMegatronDatasetConfig
    ) -> LowLevelDataset:
        """Open the low-level dataset behind `dataset_path`."""
        raise NotImplementedError

    @staticmethod
    def _key_config_attributes() -> List[str]:
        """Config attributes that change the indices, hence enter the description."""
        return ["random_seed", "sequence_length", "split", "split_matrix", "tokenizer"]

    def _extra_identifiers(self) -> Dict[str, Any]:
        """More identifiers for settings Megatron leaves out of its description but which change
        the indices; subclasses add them only away from the defaults, so default descriptions
        stay Megatron's."""
        return {}

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, idx: int) -> Dict[str, Any]: ...
