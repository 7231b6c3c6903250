"""Merge every .bin/.idx dataset of a folder into one (tools/merge_datasets.py)."""

import os
from typing import List

from megatron.core.datasets.indexed_dataset import (
    IndexedDataset,
    IndexedDatasetBuilder,
    get_bin_path,
    get_idx_path,
)


def dataset_prefixes(folder: str) -> List[str]:
    """The dataset prefixes in `folder`, sorted by name (Megatron's merge order)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--input {folder} is not a folder; give the folder holding the .bin/.idx files")
    halves = {}
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext in (".bin", ".idx") and os.path.isfile(os.path.join(folder, name)):
            halves.setdefault(stem, set()).add(ext)
    incomplete = sorted(
        f"{os.path.join(folder, stem)}{'.idx' if '.bin' in exts else '.bin'}"
        for stem, exts in halves.items()
        if len(exts) == 1
    )
    if incomplete:
        raise FileNotFoundError(
            f"--input {folder}: these files are missing for their datasets to be complete: "
            f"{', '.join(incomplete)}; add them or move the other half away"
        )
    if not halves:
        raise FileNotFoundError(f"--input {folder} holds no .bin/.idx dataset to merge")
    return [os.path.join(folder, stem) for stem in sorted(halves)]


def merge_datasets(folder: str, output_prefix: str, multimodal: bool = False) -> List[str]:
    """Concatenate the datasets of `folder` in name order into `output_prefix`; returns them."""
    prefixes = dataset_prefixes(folder)
    output = os.path.abspath(output_prefix)
    if any(os.path.abspath(p) == output for p in prefixes):
        raise ValueError(
            f"--output-prefix {output_prefix} is one of the datasets being merged; write elsewhere"
        )
    # Opening each one checks its header and sizes before anything is written.
    dtypes = {p: IndexedDataset(p, multimodal=multimodal).index.dtype for p in prefixes}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{os.path.basename(p)}: {d.__name__}" for p, d in dtypes.items())
        raise ValueError(
            f"--input {folder}: the datasets have different token dtypes ({listing}); only "
            "datasets made with the same tokenizer (vocabulary size) can be merged"
        )
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    builder = IndexedDatasetBuilder(
        get_bin_path(output_prefix), dtype=dtypes[prefixes[0]], multimodal=multimodal
    )
    try:
        for prefix in prefixes:
            builder.add_index(prefix)
        builder.finalize(get_idx_path(output_prefix))
    except BaseException:
        builder.abort()
        raise
    return prefixes
