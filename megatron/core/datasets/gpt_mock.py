"""Synthetic GPT data (--mock-data), importable from megatron.core.datasets.gpt_dataset.

Two call forms, both from Megatron Core's history:

* `MockGPTDataset(dataset, dataset_path, indices, num_samples, index_split, config)` (current
  Megatron Core, what BlendedMegatronDatasetBuilder calls): a real GPTDataset over
  MockGPTLowLevelDataset, whose 100,000 sequences have seeded lengths 1..4095 and tokens
  1, 2, ..., length - 1 followed by EOD. Same indices and samples as Megatron Core.
* `MockGPTDataset(Split.train, config)` (the Megatron Core quick-start of version 0.5): 32,767
  samples generated from (split, index): [S, 1 x S, EOD = 0, pad = 2 ...] with S drawn in
  [0, sequence_length), as Megatron Core 0.5 produced them. All token ids are below
  sequence_length, so a tiny vocabulary works; the tokenizer may be just a name ("dummy").
"""

from typing import Any, Dict, Optional

import numpy

from megatron.core.datasets.gpt_dataset import (
    MOCK_FALLBACK_EOD,
    GPTDataset,
    GPTDatasetConfig,
    eod_token_id,
)
from megatron.core.datasets.gpt_masks import get_ltor_masks_and_position_ids
from megatron.core.datasets.utils import Split

_LEGACY_LENGTH = 32767  # torch.iinfo(torch.int16).max, the length Megatron Core 0.5 reported
_LEGACY_TOKEN, _LEGACY_PAD, _LEGACY_EOD = 1, 2, 0


class MockGPTLowLevelDataset:
    """100,000 synthetic sequences (seeded), each `1, 2, ..., length - 1, EOD`."""

    seed: int = 0
    size: int = 100000
    max_sequence_length: int = 4096

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        eod = eod_token_id(tokenizer)
        self._eod = MOCK_FALLBACK_EOD if eod is None else eod
        rng = numpy.random.default_rng(seed=self.seed)
        self.sequence_lengths = rng.integers(
            low=1, high=self.max_sequence_length, size=self.size, dtype=numpy.int32
        )

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> numpy.ndarray:
        length = int(self.sequence_lengths[idx])
        sample = numpy.empty(length, dtype=numpy.int64)
        sample[:-1] = numpy.arange(1, length)
        sample[-1] = self._eod
        return sample

    def get(self, idx: int, offset: int = 0, length: Optional[int] = None) -> numpy.ndarray:
        """Tokens offset .. offset + length of sequence idx."""
        if length is None:
            length = int(self.sequence_lengths[idx]) - offset
        return self[idx][offset : offset + length]


_FULL_SIGNATURE = ("dataset", "dataset_path", "indices", "num_samples", "index_split", "config")


class MockGPTDataset(GPTDataset):
    """A GPTDataset over MockGPTLowLevelDataset; see the module docstring for the two forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._legacy = _is_legacy_call(args, kwargs)
        if self._legacy:
            split, config = _legacy_arguments(args, kwargs)
            self._init_legacy(split, config)
            return
        bound = dict(zip(_FULL_SIGNATURE, args))
        for name, value in kwargs.items():
            if name in bound or name not in _FULL_SIGNATURE:
                raise TypeError(f"MockGPTDataset() got an unexpected or repeated argument {name!r}")
            bound[name] = value
        missing = [name for name in _FULL_SIGNATURE if name not in bound]
        if missing:
            raise TypeError(f"MockGPTDataset() missing arguments: {', '.join(missing)}")
        if not bound["config"].mock:
            raise ValueError("MockGPTDataset needs a config with mock=True (--mock-data)")
        if bound["dataset"] is None:
            bound["dataset"] = MockGPTLowLevelDataset(bound["config"].tokenizer)
        if bound["indices"] is None:
            bound["indices"] = numpy.arange(len(bound["dataset"]), dtype=numpy.int32)
        super().__init__(*(bound[name] for name in _FULL_SIGNATURE))

    @staticmethod
    def numel_low_level_dataset(low_level_dataset: MockGPTLowLevelDataset) -> int:
        return len(low_level_dataset)

    @staticmethod
    def build_low_level_dataset(dataset_path: Optional[str], config: GPTDatasetConfig):
        return MockGPTLowLevelDataset(config.tokenizer)

    # ---- the Megatron Core 0.5 form ------------------------------------------------------------

    def _init_legacy(self, split: Split, config: GPTDatasetConfig) -> None:
        self.dataset = None
        self.dataset_path = None
        self.indices = None
        self.num_samples = _LEGACY_LENGTH
        self.index_split = split
        self.split = split
        self.config = config
        self.masks_and_position_ids_are_cacheable = False

    def __len__(self) -> int:
        return _LEGACY_LENGTH if self._legacy else super().__len__()

    def __getitem__(self, idx: Optional[int]) -> Dict[str, Any]:
        if not self._legacy:
            return super().__getitem__(idx)
        import torch

        if idx is None:
            idx = 0
        if not 0 <= idx < _LEGACY_LENGTH:
            raise IndexError(f"mock sample {idx} out of range [0, {_LEGACY_LENGTH})")
        length_l = self.config.sequence_length
        rng = numpy.random.default_rng(seed=[self.index_split.value, int(idx)])
        sentinel = int(rng.integers(low=0, high=length_l))
        sample = numpy.full(length_l + 1, _LEGACY_PAD, dtype=numpy.int64)
        sample[0] = sentinel
        sample[1 : sentinel + 1] = _LEGACY_TOKEN
        sample[sentinel + 1] = _LEGACY_EOD
        text = torch.from_numpy(sample)
        tokens, labels = text[:-1].contiguous(), text[1:].contiguous()
        attention_mask, loss_mask, position_ids = get_ltor_masks_and_position_ids(
            tokens,
            _LEGACY_EOD,
            bool(self.config.reset_position_ids),
            bool(self.config.reset_attention_mask),
            bool(self.config.eod_mask_loss),
            self.config.create_attention_mask,
        )
        result = {"tokens": tokens, "labels": labels}
        if self.config.create_attention_mask:
            result["attention_mask"] = attention_mask
        result.update(loss_mask=loss_mask, position_ids=position_ids)
        return result


def _is_legacy_call(args, kwargs) -> bool:
    values = list(args) + list(kwargs.values())
    return (
        len(values) == 2
        and any(isinstance(v, Split) for v in values)
        and any(isinstance(v, GPTDatasetConfig) for v in values)
    )


def _legacy_arguments(args, kwargs):
    values = list(args) + list(kwargs.values())
    split = next(v for v in values if isinstance(v, Split))
    config = next(v for v in values if isinstance(v, GPTDatasetConfig))
    return split, config
