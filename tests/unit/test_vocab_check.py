import numpy as np
import pytest

from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
from megatron.training.datasets.vocab_check import check_token_ids_fit


def _write(prefix, docs, dtype):
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.asarray(doc, dtype=dtype), [len(doc)])
    builder.finalize(prefix + ".idx")


def test_ids_outside_the_vocabulary_are_reported_with_the_prefix(tmp_path):
    prefix = str(tmp_path / "data_text_document")
    docs = [[1, 2, 3]] * 50 + [[5, 999, 7]] + [[4, 4]] * 50
    _write(prefix, docs, np.int32)
    check_token_ids_fit([prefix], 1000)  # fits
    with pytest.raises(ValueError, match=r"--data-path .*data_text_document: token id 999 .* vocabulary of 500"):
        check_token_ids_fit([prefix], 500, sample_sequences=len(docs))


def test_a_dtype_too_small_for_the_vocabulary_is_not_read(tmp_path):
    prefix = str(tmp_path / "small")
    _write(prefix, [[65535, 1]], np.uint16)
    check_token_ids_fit([prefix], 70000)  # uint16 cannot hold an id >= 70000
    with pytest.raises(ValueError):
        check_token_ids_fit([prefix], 60000)
