"""The start-up check that every token id of the data fits the tokenizer's vocabulary.

Data preprocessed with another tokenizer would otherwise fail deep inside the embedding (or, with
vocabulary padding, train silently on padding rows). Every token is read once per `.bin` and the
result remembered beside the index cache (megatron/core/datasets/token_range.py); files whose
dtype cannot hold an id that large (nor a negative one) are not read at all.

Rank 0 reads first and records the result; the other ranks that build datasets then find it
(same order as the index builds).
"""
from typing import Iterable, List, Optional, Tuple

from megatron.core.datasets.blended_megatron_dataset_builder import run_in_build_phases
from megatron.core.datasets.index_cache import default_cache_directory
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.token_range import check_token_ids


def _prefixes(config) -> List[str]:
    blends: List[Optional[Tuple]] = [config.blend] + list(config.blend_per_split or [])
    out: List[str] = []
    for blend in blends:
        if blend is not None:
            out.extend(p for p in blend[0] if p not in out)
    return out


def check_token_ids_fit(prefixes: Iterable[str], vocab_size: int, mmap: bool = True,
                        cache_path: Optional[str] = None) -> None:
    """Raise DataError naming the prefix, sequence and id if a token id is outside
    [0, vocab_size). `cache_path` is --data-cache-path (None: beside each dataset, where its
    index cache goes)."""
    for prefix in prefixes:
        directory = cache_path if cache_path else default_cache_directory(prefix)
        dataset = IndexedDataset(prefix, mmap=mmap, check_record_directory=directory)
        check_token_ids(dataset, vocab_size, directory)


def check_config_token_ids(config, is_built_on_rank=lambda: True) -> None:
    """check_token_ids_fit for a GPTDatasetConfig; call on every rank (ranks take turns)."""
    vocab = getattr(config.tokenizer, "vocab_size", None)
    if not isinstance(vocab, int) or config.mock:
        return

    def check():
        if is_built_on_rank():
            check_token_ids_fit(_prefixes(config), vocab, mmap=config.mmap_bin_files,
                                cache_path=config.path_to_cache)

    run_in_build_phases(check)
