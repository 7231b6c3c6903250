"""IndexedDatasetBuilder: writes a `.bin`/`.idx` pair (Megatron's writer API, our streaming code).

Tokens go to a temporary `.bin` as they arrive (temp_files.temporary_path: the name carries the
host and pid, so that a later run can tell a dead writer's file from a live one's); only the
lengths and document boundaries stay in memory. `finalize` writes the `.idx` and renames both.
"""

import array
import os
from typing import Callable, Optional, Sequence

import numpy

from megatron.core.datasets.indexed_dataset import (
    _INDEX_HEADER,
    _INDEX_MAGIC,
    _INDEX_VERSION,
    DType,
    _IndexReader,
    get_bin_path,
    get_idx_path,
)
from megatron.core.datasets.index_validation import check_bin_size
from megatron.core.temp_files import temporary_path
from megatron.core.errors import DataError, MissingFileError

_COPY_CHUNK_BYTES = 16 * 1024 * 1024


def _as_token_array(tokens, dtype) -> numpy.ndarray:
    """Token ids as a flat numpy array of `dtype`, refusing ids that the dtype cannot hold
    (a silent wrap-around would corrupt the data without any sign)."""
    if hasattr(tokens, "numpy") and not isinstance(tokens, numpy.ndarray):
        tokens = tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else tokens.numpy()
    source = numpy.asarray(tokens)
    if source.size == 0:
        return numpy.empty(0, dtype=dtype)
    if source.dtype != dtype and source.dtype.kind in "iub" and numpy.dtype(dtype).kind in "iu":
        limits = numpy.iinfo(dtype)
        low, high = source.min(), source.max()
        if low < limits.min or high > limits.max:
            raise DataError(
                f"token ids from {low} to {high} do not fit the dataset dtype "
                f"{numpy.dtype(dtype).name} ({limits.min}..{limits.max}); build the dataset with "
                "a wider dtype (DType.optimal_dtype(vocab_size) for the right vocabulary size)"
            )
    return numpy.ascontiguousarray(source, dtype=dtype).reshape(-1)


class IndexedDatasetBuilder:
    """Writes an indexed dataset as it goes.

    Tokens are appended to a temporary `.bin` as they arrive; only the lengths (4 bytes per
    sequence) and document boundaries stay in memory. `finalize(idx_path)` writes the `.idx`
    and renames both files, so a run that dies never leaves a dataset that looks complete.
    """

    def __init__(self, bin_path: str, dtype=numpy.int32, multimodal: bool = False) -> None:
        self.bin_path = bin_path
        self.dtype = numpy.dtype(dtype).type
        DType.code_from_dtype(self.dtype)  # refuse unsupported dtypes before writing anything
        self.multimodal = multimodal
        self._tmp_bin_path = temporary_path(bin_path)
        self._bin = open(self._tmp_bin_path, "wb")
        self.sequence_lengths = array.array("i")
        self.document_indices = array.array("q", [0])
        self.sequence_modes = array.array("b") if multimodal else None

    def add_item(self, tensor, mode: int = 0) -> None:
        """Append one sequence (ends no document; see end_document)."""
        tokens = _as_token_array(tensor, self.dtype)
        self._bin.write(tokens.data)
        self.sequence_lengths.append(tokens.size)
        if self.multimodal:
            self.sequence_modes.append(mode)

    def end_document(self) -> None:
        """Close the current document after the sequences added with add_item."""
        self.document_indices.append(len(self.sequence_lengths))

    def add_document(self, tensor, lengths: Sequence[int], modes: Optional[Sequence[int]] = None):
        """Append one document: its tokens back to back, cut into sequences of `lengths`.
        An empty `lengths` gives an empty document (a boundary with no sequence)."""
        tokens = _as_token_array(tensor, self.dtype)
        lengths = numpy.asarray(lengths, dtype=numpy.int64).reshape(-1)
        if int(lengths.sum()) != tokens.size:
            raise ValueError(
                f"add_document: the sequence lengths add up to {int(lengths.sum())} tokens but the "
                f"document has {tokens.size}"
            )
        self._bin.write(tokens.data)
        self.sequence_lengths.frombytes(lengths.astype(numpy.int32).tobytes())
        self.document_indices.append(len(self.sequence_lengths))
        if self.multimodal:
            self.sequence_modes.extend(modes if modes is not None else [0] * len(lengths))

    def add_document_batch(
        self, tokens: numpy.ndarray, sequence_lengths: numpy.ndarray, sequences_per_document
    ) -> None:
        """Append many documents at once (the fast path of tools/preprocess_data.py).

        `tokens` holds all their tokens back to back, `sequence_lengths` the length of every
        sequence, `sequences_per_document` how many sequences each document has (0: empty).
        """
        tokens = _as_token_array(tokens, self.dtype)
        sequence_lengths = numpy.asarray(sequence_lengths, dtype=numpy.int32).reshape(-1)
        counts = numpy.asarray(sequences_per_document, dtype=numpy.int64).reshape(-1)
        if int(sequence_lengths.sum(dtype=numpy.int64)) != tokens.size:
            raise ValueError("add_document_batch: sequence lengths do not add up to the tokens given")
        if int(counts.sum()) != sequence_lengths.size:
            raise ValueError("add_document_batch: documents do not add up to the sequences given")
        if self.multimodal:
            raise ValueError("add_document_batch writes no modes; use add_document for multimodal data")
        self._bin.write(tokens.data)
        ends = len(self.sequence_lengths) + numpy.cumsum(counts)
        self.sequence_lengths.frombytes(sequence_lengths.tobytes())
        self.document_indices.frombytes(ends.astype(numpy.int64).tobytes())

    def add_index(
        self, path_prefix: str, on_copied: Optional[Callable[[int], None]] = None
    ) -> None:
        """Append a whole existing dataset (its documents after ours; same dtype required).

        `on_copied(bytes)` is called after each chunk of its `.bin` is copied (for progress lines).
        """
        index = _IndexReader(get_idx_path(path_prefix), multimodal=self.multimodal)
        if index.dtype != self.dtype:
            raise DataError(
                f"cannot merge {path_prefix} ({index.dtype.__name__} tokens) into a dataset of "
                f"{self.dtype.__name__} tokens; both must be built with the same tokenizer dtype"
            )
        bin_path = get_bin_path(path_prefix)
        if not os.path.isfile(bin_path):
            raise MissingFileError(f"{bin_path} is missing (its index {index.idx_path} exists)")
        check_bin_size(bin_path, index.idx_path, index.bin_size(), f"{len(index)} sequences")
        offset = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(numpy.ascontiguousarray(index.sequence_lengths).tobytes())
        self.document_indices.frombytes((index.document_indices[1:] + offset).tobytes())
        if self.multimodal:
            self.sequence_modes.frombytes(numpy.ascontiguousarray(index.sequence_modes).tobytes())
        del index
        with open(bin_path, "rb") as source:
            while True:
                block = source.read(_COPY_CHUNK_BYTES)
                if not block:
                    break
                self._bin.write(block)
                if on_copied is not None:
                    on_copied(len(block))

    def finalize(self, idx_path: str) -> None:
        """Write the `.idx`, then move both files to their final names."""
        self._bin.close()
        lengths = numpy.frombuffer(self.sequence_lengths, dtype=numpy.int32)
        pointers = numpy.zeros(len(lengths), dtype=numpy.int64)
        if len(lengths) > 1:
            numpy.cumsum(lengths[:-1], dtype=numpy.int64, out=pointers[1:])
        pointers *= numpy.dtype(self.dtype).itemsize
        tmp_idx_path = temporary_path(idx_path)
        with open(tmp_idx_path, "wb") as out:
            out.write(
                _INDEX_HEADER.pack(
                    _INDEX_MAGIC,
                    _INDEX_VERSION,
                    DType.code_from_dtype(self.dtype),
                    len(lengths),
                    len(self.document_indices),
                )
            )
            # The format is little-endian whatever the machine ('<' is a no-op on x86/ARM).
            out.write(lengths.astype("<i4").tobytes())
            out.write(pointers.astype("<i8").tobytes())
            out.write(numpy.frombuffer(self.document_indices, dtype=numpy.int64).astype("<i8").tobytes())
            if self.multimodal:
                out.write(self.sequence_modes.tobytes())
        # The .bin first: a reader that finds the new .idx then also finds its .bin.
        os.replace(self._tmp_bin_path, self.bin_path)
        os.replace(tmp_idx_path, idx_path)

    def abort(self) -> None:
        """Drop what was written (for a run that failed): no final-named file is touched."""
        if not self._bin.closed:
            self._bin.close()
        if os.path.exists(self._tmp_bin_path):
            os.remove(self._tmp_bin_path)
