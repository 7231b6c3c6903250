"""BlendedMegatronDatasetConfig: what to build (blends, split, sizes' context) and how."""

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from megatron.core.datasets.utils import Split, log_single_rank, normalize
from megatron.core.errors import ConfigError

logger = logging.getLogger(__name__)

Blend = Tuple[List[str], Optional[List[float]]]


@dataclass
class BlendedMegatronDatasetConfig:
    """Configuration of Megatron Core datasets (field names and defaults as in Megatron Core)."""

    random_seed: int
    """Seed of every random choice made while building the datasets (shuffles)."""

    sequence_length: int
    """Tokens per sample."""

    blend: Optional[Blend] = None
    """(prefixes, weights or None), e.g. (["a", "b"], [0.3, 0.7]); with `split`. Without weights,
    the datasets are blended in proportion to their sizes."""

    blend_per_split: Optional[List[Optional[Blend]]] = None
    """One blend (or None) per split: train, valid, test. Not with `blend` or `split`."""

    multiple_validation_sets: Optional[bool] = None
    """Keep each validation prefix a separate dataset instead of blending them."""

    full_validation: Optional[bool] = None
    """Validate on a whole epoch each time."""

    split: Optional[str] = None
    """Train/valid/test proportions of one blend, e.g. "969,30,1"."""

    split_matrix: Optional[List[Optional[Tuple[float, float]]]] = field(init=False, default=None)
    """[(begin, end) or None] per split, derived from `split`."""

    num_dataset_builder_threads: int = 1
    """Threads building the datasets of a blend in parallel."""

    path_to_cache: Optional[str] = None
    """Directory of the reusable index files (--data-cache-path)."""

    mmap_bin_files: bool = True
    """Memory-map the .bin files (False: read them with pread)."""

    mock: bool = False
    """Synthetic data. Set automatically when there is no blend; older Megatron Core scripts
    also pass mock=True themselves."""

    tokenizer: Optional[Any] = None
    """The tokenizer (its eod / pad ids are used; its identifiers enter the cache names)."""

    mid_level_dataset_surplus: float = 0.005
    """Extra fraction of samples each blended component builds beyond its target."""

    allow_ambiguous_pad_tokens: bool = False
    """Keep a tokenizer pad id that equals its EOD/EOS id (masks those tokens as padding)."""

    def __post_init__(self) -> None:
        if self.sequence_length is None or int(self.sequence_length) < 1:
            raise ValueError(
                f"sequence_length (--seq-length) must be a positive number of tokens, got "
                f"{self.sequence_length}"
            )
        if self.mid_level_dataset_surplus is None or self.mid_level_dataset_surplus < 0:
            raise ValueError(
                "mid_level_dataset_surplus (--mid-level-dataset-surplus) must be >= 0, got "
                f"{self.mid_level_dataset_surplus}"
            )
        # Old scripts pass blend=[] for "no data"; treat empty blends as absent.
        if self.blend is not None and len(self.blend) == 0:
            self.blend = None
        if self.blend_per_split is not None and not any(self.blend_per_split):
            self.blend_per_split = None

        if self.mock:
            log_single_rank(logger, logging.INFO, "mock=True: building synthetic data")
        elif self.blend_per_split is not None:
            if self.blend is not None:
                raise ValueError(
                    "blend (--data-path) and blend_per_split (--train/valid/test-data-path) are "
                    "mutually exclusive: give one of them"
                )
            if self.split is not None:
                raise ValueError(
                    "split (--split) applies to blend (--data-path) only; with per-split data "
                    "paths each split has its own data: drop --split"
                )
            if len(self.blend_per_split) != len(Split):
                raise ValueError(
                    f"blend_per_split needs {len(Split)} entries (train, valid, test; None for a "
                    f"split without data), got {len(self.blend_per_split)}"
                )
            for split in Split:
                blend = self.blend_per_split[split.value]
                if blend is None:
                    log_single_rank(
                        logger, logging.INFO, f"blend not provided for {split.name} split"
                    )
                else:
                    _check_blend(blend, f"the {split.name} blend (--{split.name}-data-path)")
        elif self.blend is not None:
            _check_blend(self.blend, "blend (--data-path)")
            if self.split is None:
                raise ValueError(
                    "split (--split) must be given with blend (--data-path), e.g. '969,30,1'"
                )
        else:
            self.mock = True
            log_single_rank(logger, logging.INFO, "No blend given: mock = True (synthetic data)")

        if self.mock:
            # Megatron splits the mock data evenly whatever --split says.
            self.split = "1,1,1"
        if self.split is not None:
            self.split_matrix = convert_split_vector_to_split_matrix(
                parse_and_normalize_split(self.split)
            )
            log_single_rank(logger, logging.INFO, f"Let split_matrix = {self.split_matrix}")


def _check_blend(blend, what: str) -> None:
    if len(blend) != 2 or blend[0] is None or len(blend[0]) == 0:
        raise ValueError(f"{what} must be (prefixes, weights or None) with prefixes, got {blend!r}")
    prefixes, weights = blend
    if weights is not None and len(weights) != len(prefixes):
        raise ValueError(
            f"{what} has {len(prefixes)} prefixes but {len(weights)} weights: give one weight per "
            "prefix ('w1 p1 w2 p2 ...'), or none"
        )


# Megatron reads every run of digits and dots in --split, whatever separates them ("90,5,5",
# "90 5 5", "90/5/5"), and so silently reads "90,abc" as 90,0,0 and "-5" as 5. We accept the same
# numbers with commas, slashes or blanks between them, and refuse anything else.
_SPLIT_SEPARATOR = re.compile(r"\s*[,/]\s*|\s+")
_SPLIT_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def parse_and_normalize_split(split: str) -> List[float]:
    """'99,1,0' -> [0.99, 0.01, 0.0]; up to three non-negative numbers (missing ones are 0),
    separated by commas, slashes or blanks, not all zero. Anything else is a ConfigError
    naming --split."""
    text = str(split).strip()
    example = "e.g. '969,30,1' or '90,10,0'"
    parts = _SPLIT_SEPARATOR.split(text) if text else []
    if not parts:
        raise ConfigError(f"--split {split!r} is empty: give train,valid,test proportions, {example}")
    if len(parts) > len(Split):
        raise ConfigError(
            f"--split {split!r} has {len(parts)} parts; give at most {len(Split)} "
            f"(train,valid,test), {example}"
        )
    for part in parts:
        if part.startswith("-") and _SPLIT_NUMBER.fullmatch(part[1:]):
            raise ConfigError(f"--split {split!r}: the part {part} is negative; proportions are >= 0")
        if not _SPLIT_NUMBER.fullmatch(part):
            what = "an empty part" if part == "" else f"the part {part!r}"
            raise ConfigError(
                f"--split {split!r}: {what} is not a number; give up to {len(Split)} "
                f"non-negative numbers separated by commas, {example}"
            )
    values = [float(part) for part in parts] + [0.0] * (len(Split) - len(parts))
    if sum(values) <= 0:
        raise ConfigError(
            f"--split {split!r}: the proportions are all zero, so no split gets data; {example}"
        )
    return normalize(values)


def convert_split_vector_to_split_matrix(
    vector_a: List[float], vector_b: Optional[List[float]] = None
) -> List[Optional[Tuple[float, float]]]:
    """Book-ends of each split, [(0, a0), (a0, a0 + a1), ...], None for an empty split.

    With a second vector (Retro), each split is the overlap of the two vectors' book-ends.
    The cumulative sums start from the integer 0 and add in order, as Megatron does, so the
    book-ends (and the cache descriptions that print them) come out identical.
    """
    if vector_b is None:
        vector_b = vector_a

    def bookends(vector):
        edges = functools.reduce(lambda acc, value: acc + [acc[-1] + value], vector, [0])
        return list(zip(edges[:-1], edges[1:]))

    matrix: List[Optional[Tuple[float, float]]] = []
    for (a_lo, a_hi), (b_lo, b_hi) in zip(bookends(vector_a), bookends(vector_b)):
        lo, hi = max(a_lo, b_lo), min(a_hi, b_hi)
        matrix.append(None if hi <= lo else (lo, hi))
    return matrix
