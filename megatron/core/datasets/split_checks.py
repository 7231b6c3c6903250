"""Splits that are empty or shorter than one sample: said plainly, by split and prefix.

* `requested_but_empty_splits(config, sizes)`: the splits that samples are asked of but that the
  configuration gives no data (`--split 100,0,0` with validation on, or no `--valid-data-path`).
  The builder warns about each; the training loop can call it to turn evaluation off.
* `check_split_length(...)`: a split with fewer tokens than one sample: a warning when epochs of it
  still give the samples asked for, an error (naming --seq-length) when it gives none.
"""

import logging
from typing import List, Optional

from megatron.core.datasets.utils import Split, log_single_rank
from megatron.core.errors import DataError

logger = logging.getLogger(__name__)


def _is_requested(size: Optional[int]) -> bool:
    # None ("as many as one epoch gives", e.g. --full-validation) asks for no particular number:
    # an empty split then simply has none. 0 asks for nothing.
    return size is not None and size > 0


def requested_but_empty_splits(config, sizes: List[Optional[int]]) -> List[Split]:
    """The splits with samples requested in `sizes` (train, valid, test) that get no data from
    `config` (a BlendedMegatronDatasetConfig). Mock data fills every split."""
    if config.mock:
        return []
    empty = []
    for split in Split:
        if not _is_requested(sizes[split.value]):
            continue
        if config.blend_per_split is not None:
            has_data = config.blend_per_split[split.value] is not None
        else:
            has_data = config.split_matrix is not None and config.split_matrix[split.value] is not None
        if not has_data:
            empty.append(split)
    return empty


def describe_empty_split(config, split: Split, size: Optional[int]) -> str:
    asked = f"{size} samples"
    if config.blend_per_split is not None:
        why = f"no --{split.name}-data-path (or per-split data file entry) gives it data"
    else:
        why = f"--split {config.split!r} gives it no share of the data"
    return f"The {split.name} split is empty: {why}, but {asked} were requested from it."


def warn_requested_but_empty(config, sizes: List[Optional[int]]) -> List[Split]:
    empty = requested_but_empty_splits(config, sizes)
    for split in empty:
        log_single_rank(logger, logging.WARNING, describe_empty_split(config, split, sizes[split.value]))
    return empty


def check_split_length(dataset, tokens: int, num_epochs: int, total: int) -> None:
    """For a GPTDataset split of `tokens` tokens that builds `total` samples over `num_epochs`."""
    length = dataset.config.sequence_length
    needed = length + int(dataset.config.add_extra_token_to_sequence)
    if tokens >= needed or tokens == 0 or dataset.num_samples == 0:
        return
    where = f"The {dataset.index_split.name} split of {dataset.dataset_path or 'the dataset'}"
    if total == 0:
        raise DataError(
            f"{where} has {tokens} tokens, fewer than the {needed} that one sample of --seq-length "
            f"{length} reads, so it gives no sample at all. Give it more data (or another "
            "--split), or lower --seq-length."
        )
    log_single_rank(
        logger,
        logging.WARNING,
        f"{where} has only {tokens} tokens, fewer than the {needed} that one sample of --seq-length "
        f"{length} reads: its {total} samples repeat the same tokens over {num_epochs} epochs.",
    )
