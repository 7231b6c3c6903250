"""Merge every .bin/.idx dataset of a folder into one (tools/merge_datasets.py).

Each input is opened (and so checked: header, pointers, document index, .bin size) before
anything is written; the output is written under temporary names and renamed at the end, with a
progress line every few seconds while the token files are copied.
"""

import os
from typing import List

from megatron.core.datasets.indexed_dataset import IndexedDataset, get_bin_path, get_idx_path
from megatron.core.datasets.indexed_dataset_builder import IndexedDatasetBuilder
from megatron.core.datasets.progress import PhaseProgress
from megatron.core.errors import ConfigError, DataError, MissingFileError
from megatron.preprocess.outputs import prepare_output_directory


def dataset_prefixes(folder: str) -> List[str]:
    """The dataset prefixes in `folder`, sorted by name (Megatron's merge order)."""
    if not os.path.isdir(folder):
        raise MissingFileError(f"--input {folder} is not a folder; give the folder holding the .bin/.idx files")
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
        raise MissingFileError(
            f"--input {folder}: these files are missing for their datasets to be complete: "
            f"{', '.join(incomplete)}; add them or move the other half away"
        )
    if not halves:
        raise DataError(f"--input {folder} holds no .bin/.idx dataset to merge")
    return [os.path.join(folder, stem) for stem in sorted(halves)]


def merge_datasets(folder: str, output_prefix: str, multimodal: bool = False, log=None) -> List[str]:
    """Concatenate the datasets of `folder` in name order into `output_prefix`; returns them."""
    prefixes = dataset_prefixes(folder)
    output = os.path.abspath(output_prefix)
    if any(os.path.abspath(p) == output for p in prefixes):
        raise ConfigError(
            f"--output-prefix {output_prefix} is one of the datasets being merged; write elsewhere"
        )
    # Opening each one checks its header and sizes before anything is written.
    dtypes = {p: IndexedDataset(p, multimodal=multimodal).index.dtype for p in prefixes}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{os.path.basename(p)}: {d.__name__}" for p, d in dtypes.items())
        raise DataError(
            f"--input {folder}: the datasets have different token dtypes ({listing}); only "
            "datasets made with the same tokenizer (vocabulary size) can be merged"
        )
    prepare_output_directory(output_prefix, log)
    builder = IndexedDatasetBuilder(
        get_bin_path(output_prefix), dtype=dtypes[prefixes[0]], multimodal=multimodal
    )
    total = sum(os.path.getsize(get_bin_path(p)) for p in prefixes)
    try:
        with PhaseProgress(f"Merging {len(prefixes)} datasets into {output_prefix}",
                           -(-total // (1 << 20)), "MB", emit=log) as progress:
            copied = 0

            def on_copied(count: int) -> None:
                nonlocal copied
                copied += count
                progress.update(copied >> 20)

            for number, prefix in enumerate(prefixes, 1):
                progress.set_step(f"dataset {number}/{len(prefixes)} ({os.path.basename(prefix)})")
                builder.add_index(prefix, on_copied=on_copied)
            progress.set_step("writing the index")
            builder.finalize(get_idx_path(output_prefix))
    except BaseException:
        builder.abort()
        raise
    return prefixes
