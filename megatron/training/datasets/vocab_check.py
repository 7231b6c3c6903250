"""A cheap start-up check that a dataset's token ids fit the tokenizer's vocabulary.

Data preprocessed with another tokenizer would otherwise fail deep inside the embedding (or, with
vocabulary padding, train silently on padding rows). Reading every token of a large corpus is not
cheap, so the check looks at a spread sample of sequences, and skips files whose dtype cannot hold
an id that large at all.
"""
from typing import Iterable, List, Optional, Tuple

import numpy

from megatron.core.datasets.indexed_dataset import IndexedDataset


def _prefixes(config) -> List[str]:
    blends: List[Optional[Tuple]] = [config.blend] + list(config.blend_per_split or [])
    out: List[str] = []
    for blend in blends:
        if blend is not None:
            out.extend(p for p in blend[0] if p not in out)
    return out


def check_token_ids_fit(prefixes: Iterable[str], vocab_size: int, sample_sequences: int = 64,
                        mmap: bool = True) -> None:
    """Raise ValueError naming the prefix if a sampled token id is >= ``vocab_size``."""
    for prefix in prefixes:
        dataset = IndexedDataset(prefix, mmap=mmap)
        dtype = dataset.index.dtype
        if numpy.issubdtype(dtype, numpy.integer) and numpy.iinfo(dtype).max < vocab_size:
            continue  # no id stored in this dtype can be too large
        count = len(dataset)
        if count == 0:
            continue
        for i in numpy.unique(numpy.linspace(0, count - 1, min(count, sample_sequences)).astype(numpy.int64)):
            tokens = dataset[int(i)]
            if tokens.size and int(tokens.max()) >= vocab_size:
                raise ValueError(
                    f"--data-path {prefix}: token id {int(tokens.max())} (sequence {int(i)}) is outside the "
                    f"tokenizer's vocabulary of {vocab_size} ids: the data was made with another tokenizer. "
                    "Train with that tokenizer's flags, or preprocess the data again with this one.")


def check_config_token_ids(config) -> None:
    vocab = getattr(config.tokenizer, "vocab_size", None)
    if isinstance(vocab, int) and not config.mock:
        check_token_ids_fit(_prefixes(config), vocab, mmap=config.mmap_bin_files)
