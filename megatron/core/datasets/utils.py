"""Splits, blend parsing, weight normalisation and rank-aware logging for the datasets.

Nothing here imports torch: the index-building path must start fast, and a process that never
imported torch cannot have initialised torch.distributed either.
"""

import logging
import os
import sys
from enum import Enum
from typing import Any, List, Optional, Tuple

import numpy

logger = logging.getLogger(__name__)


class Split(Enum):
    train = 0
    valid = 1
    test = 2


def initialized_torch_distributed():
    """torch.distributed when a process group is up, else None (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def global_rank() -> int:
    dist = initialized_torch_distributed()
    return dist.get_rank() if dist is not None else 0


def log_single_rank(log: logging.Logger, level: int, message: str, rank: int = 0) -> None:
    """Log on one rank only (rank 0 by default), or always when torch.distributed is down."""
    if global_rank() == rank:
        log.log(level, message)


def compile_helpers() -> None:
    """Kept for scripts that call it: our index helpers are numpy, there is nothing to build."""
    log_single_rank(logger, logging.DEBUG, "compile_helpers: nothing to compile (numpy helpers)")


def normalize(weights: List[float]) -> List[float]:
    """Weights divided by their sum, as Python floats (float64 arithmetic, like Megatron)."""
    array = numpy.array(weights, dtype=numpy.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"blend weights must be a non-empty list of numbers, got {weights!r}")
    if not numpy.all(numpy.isfinite(array)) or numpy.any(array < 0):
        raise ValueError(f"blend weights must be finite and non-negative, got {weights!r}")
    total = numpy.sum(array)
    if total <= 0:
        raise ValueError(f"blend weights must not all be zero, got {weights!r}")
    return (array / total).tolist()


def _as_weight(text: Any) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _names_a_dataset(prefix: str) -> bool:
    return os.path.isfile(prefix + ".idx") or os.path.isfile(prefix + ".bin")


def get_blend_from_list(
    blend: Optional[List[str]],
) -> Optional[Tuple[List[str], Optional[List[float]]]]:
    """Parse a --data-path style list into (prefixes, weights or None).

    Either prefixes only (`p1 p2 ...`) or weight/prefix pairs (`w1 p1 w2 p2 ...`); weights need not
    sum to one. A list that mixes the two forms, or whose weights and prefixes do not pair up, is an
    error naming what is wrong rather than a list of nonexistent prefixes.
    """
    if blend is None:
        return None
    if isinstance(blend, str):
        blend = blend.split()
    blend = [str(item) for item in blend]
    if len(blend) == 0:
        return None

    looks_like_weight = [
        _as_weight(item) is not None and not _names_a_dataset(item.strip()) for item in blend
    ]
    if len(blend) % 2 == 0 and all(looks_like_weight[0::2]) and not any(looks_like_weight[1::2]):
        weights = [_as_weight(item) for item in blend[0::2]]
        prefixes = [item.strip() for item in blend[1::2]]
        for weight, prefix in zip(weights, prefixes):
            if weight < 0 or not numpy.isfinite(weight):
                raise ValueError(
                    f"--data-path: weight {weight} of {prefix!r} must be a finite number >= 0"
                )
        return prefixes, weights

    if not any(looks_like_weight):
        return [item.strip() for item in blend], None

    numbers = [item for item, is_weight in zip(blend, looks_like_weight) if is_weight]
    raise ValueError(
        f"--data-path (or a per-split data path) {' '.join(blend)!r} mixes weights and prefixes "
        f"that do not pair up: it has {len(blend)} entries, {len(numbers)} of them numbers "
        f"({', '.join(numbers)}). Give either prefixes only ('p1 p2 ...') or weight/prefix "
        "pairs ('w1 p1 w2 p2 ...'), each weight directly before its prefix."
    )
