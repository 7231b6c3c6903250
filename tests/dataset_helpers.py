"""Small datasets for tests: a uint16 .bin/.idx of one-sequence documents, a tokenizer stand-in
and a GPT dataset config (no cache path unless given)."""

import numpy


class Tokenizer:
    """What GPTDataset reads of a tokenizer: its eod id and its cache identifiers."""

    eod = 0
    unique_identifiers = {"class": "TestTokenizer"}


def write_documents(prefix, lengths):
    """A dataset at `prefix` of one-sequence documents 1, 2, ..., length (uint16); returns prefix."""
    from megatron.core.datasets.indexed_dataset_builder import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=numpy.uint16)
    for length in lengths:
        builder.add_document(numpy.arange(1, length + 1, dtype=numpy.uint16), [length])
    builder.finalize(prefix + ".idx")
    return prefix


def gpt_config(blend, split="1", seq_length=16, seed=1, tokenizer=None, **overrides):
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    return GPTDatasetConfig(random_seed=seed, sequence_length=seq_length, blend=blend, split=split,
                            tokenizer=tokenizer or Tokenizer(), reset_position_ids=False,
                            reset_attention_mask=False, eod_mask_loss=False, **overrides)
