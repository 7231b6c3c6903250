"""Megatron's memory-mapped indexed dataset: a `.bin` file of token ids and an `.idx` index.

A dataset is a path prefix P with the files P.bin and P.idx. The byte layout (the "MMIDIDX" format)
is fixed by Megatron-LM and described in docs/preprocessing.md; files written here are read by
Megatron-LM and the other way round, byte for byte.

Only numpy is imported here (no torch), so that tools and data start-up stay quick.
"""

import array
import os
import shutil
import struct
from enum import Enum
from typing import Optional, Sequence, Tuple, Type

import numpy

_INDEX_MAGIC = b"MMIDIDX\x00\x00"
_INDEX_VERSION = 1
# magic, version, dtype code, number of sequences, length of the document-index array
_INDEX_HEADER = struct.Struct("<9sQBQQ")
_COPY_CHUNK_BYTES = 16 * 1024 * 1024


class DType(Enum):
    """Token dtypes and the one-byte codes that name them in an `.idx` header."""

    uint8 = 1
    int8 = 2
    int16 = 3
    int32 = 4
    int64 = 5
    float64 = 6
    float32 = 7
    uint16 = 8

    @classmethod
    def code_from_dtype(cls, value) -> int:
        """The code of a numpy scalar type or dtype (numpy.uint16, numpy.dtype('uint16'), 'uint16')."""
        name = numpy.dtype(value).name
        if name not in cls.__members__:
            raise ValueError(
                f"dtype {name} cannot be stored in an indexed dataset; "
                f"use one of {', '.join(cls.__members__)}"
            )
        return cls[name].value

    @classmethod
    def dtype_from_code(cls, value: int) -> Type[numpy.number]:
        """The numpy scalar type of a code (4 -> numpy.int32)."""
        try:
            return getattr(numpy, cls(value).name)
        except ValueError:
            raise ValueError(
                f"unknown dtype code {value} in an .idx header; known codes are "
                f"{', '.join(f'{m.value}={m.name}' for m in cls)}"
            ) from None

    @staticmethod
    def size(key) -> int:
        """Bytes per element of a code or a numpy type."""
        if isinstance(key, (int, numpy.integer)) and not isinstance(key, bool):
            return numpy.dtype(DType.dtype_from_code(int(key))).itemsize
        return numpy.dtype(key).itemsize

    @staticmethod
    def optimal_dtype(cardinality: Optional[int]) -> Type[numpy.number]:
        """The token dtype for a vocabulary of `cardinality` ids: uint16 when it fits, else int32.

        The bound is Megatron's (65500, not 65536); it decides the bytes on disk, so keep it.
        """
        if cardinality is not None and cardinality < 65500:
            return numpy.uint16
        return numpy.int32


def get_idx_path(path_prefix: str) -> str:
    return path_prefix + ".idx"


def get_bin_path(path_prefix: str) -> str:
    return path_prefix + ".bin"


def _temporary_path(final_path: str) -> str:
    # One name per process, so that two runs writing the same output cannot mix their bytes.
    return f"{final_path}.tmp-{os.getpid()}"


class _IndexReader:
    """The arrays of an `.idx` file, memory-mapped (nothing is read until it is used).

    Checks what can be checked without reading the arrays, so that a damaged file fails here,
    by name, instead of as a wrong sample later.
    """

    def __init__(self, idx_path: str, multimodal: bool) -> None:
        self.idx_path = idx_path
        file_size = os.path.getsize(idx_path)
        with open(idx_path, "rb") as stream:
            head = stream.read(_INDEX_HEADER.size)
        if len(head) < _INDEX_HEADER.size:
            raise ValueError(
                f"{idx_path} is {file_size} bytes, shorter than the {_INDEX_HEADER.size}-byte header "
                "of an indexed dataset index: the file is truncated; write it again"
            )
        magic, version, code, sequence_count, document_count = _INDEX_HEADER.unpack(head)
        if magic != _INDEX_MAGIC:
            hint = (
                " (this is a legacy lazy/cached index, 'TNTIDX'; rebuild it with tools/preprocess_data.py)"
                if magic.startswith(b"TNTIDX")
                else ""
            )
            raise ValueError(
                f"{idx_path} does not start with the indexed dataset magic {_INDEX_MAGIC!r} "
                f"(found {magic!r}){hint}: it is not a Megatron .idx file"
            )
        if version != _INDEX_VERSION:
            raise ValueError(f"{idx_path} has index version {version}; only version 1 can be read")
        self.dtype = DType.dtype_from_code(code)
        self.dtype_size = DType.size(self.dtype)
        self.sequence_count = sequence_count
        self.document_count = document_count

        lengths_at = _INDEX_HEADER.size
        pointers_at = lengths_at + 4 * sequence_count
        documents_at = pointers_at + 8 * sequence_count
        modes_at = documents_at + 8 * document_count
        needed = modes_at + (sequence_count if multimodal else 0)
        if file_size < needed:
            raise ValueError(
                f"{idx_path} is truncated: its header announces {sequence_count} sequences and "
                f"{document_count} document-index entries{' with modes' if multimodal else ''}, "
                f"which need {needed} bytes, but the file has {file_size}; write it again"
            )
        if document_count < 1:
            raise ValueError(f"{idx_path} has an empty document index (at least [0] is required)")

        self._mmap = numpy.memmap(idx_path, mode="r", dtype=numpy.uint8)
        buffer = memoryview(self._mmap)
        self.sequence_lengths = numpy.frombuffer(
            buffer, dtype=numpy.int32, count=sequence_count, offset=lengths_at
        )
        self.sequence_pointers = numpy.frombuffer(
            buffer, dtype=numpy.int64, count=sequence_count, offset=pointers_at
        )
        self.document_indices = numpy.frombuffer(
            buffer, dtype=numpy.int64, count=document_count, offset=documents_at
        )
        self.sequence_modes = None
        if multimodal:
            self.sequence_modes = numpy.frombuffer(
                buffer, dtype=numpy.int8, count=sequence_count, offset=modes_at
            )
        if self.document_indices[0] != 0 or self.document_indices[-1] != sequence_count:
            raise ValueError(
                f"{idx_path} is inconsistent: its document index runs from "
                f"{self.document_indices[0]} to {self.document_indices[-1]}, expected 0 to the "
                f"{sequence_count} sequences; the file is damaged, write it again"
            )

    def bin_size(self) -> int:
        """The size in bytes that the matching `.bin` file must have."""
        if self.sequence_count == 0:
            return 0
        last = self.sequence_count - 1
        return int(self.sequence_pointers[last]) + int(self.sequence_lengths[last]) * self.dtype_size

    def __len__(self) -> int:
        return self.sequence_count

    def __getitem__(self, idx: int) -> Tuple[int, int, Optional[int]]:
        """(byte pointer, length, mode or None) of sequence `idx`."""
        mode = self.sequence_modes[idx] if self.sequence_modes is not None else None
        return int(self.sequence_pointers[idx]), int(self.sequence_lengths[idx]), mode


class _MMapBinReader:
    """Reads token ids straight out of a memory map of the `.bin` file (the default)."""

    def __init__(self, bin_path: str) -> None:
        # numpy cannot map an empty file; a dataset of empty documents has one.
        if os.path.getsize(bin_path) == 0:
            self._buffer = memoryview(b"")
        else:
            self._buffer = memoryview(numpy.memmap(bin_path, mode="r", dtype=numpy.uint8))

    def read(self, dtype, count: int, offset: int) -> numpy.ndarray:
        return numpy.frombuffer(self._buffer, dtype=dtype, count=count, offset=offset)


class _FileBinReader:
    """Reads with pread, one call per read (`--no-mmap-bin-files`): for file systems where
    memory maps behave badly. The descriptor is reopened after a fork."""

    def __init__(self, bin_path: str) -> None:
        self._bin_path = bin_path
        self._fd = None
        self._pid = None

    def read(self, dtype, count: int, offset: int) -> numpy.ndarray:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._bin_path, os.O_RDONLY)
            self._pid = os.getpid()
        out = numpy.empty(count, dtype=dtype)
        view = memoryview(out).cast("B")
        done = 0
        while done < view.nbytes:
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got == 0:
                raise RuntimeError(
                    f"{self._bin_path} ended at byte {offset + done} while reading {count} "
                    f"tokens at byte {offset}: the file is shorter than its index says"
                )
            done += got
        return out

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class IndexedDataset:
    """The token sequences of one `.bin`/`.idx` pair.

    Args:
        path_prefix: the files are `path_prefix + ".bin"` and `path_prefix + ".idx"`.
        multimodal: the index carries one int8 mode per sequence after the document index.
        mmap: memory-map the `.bin` (True) or read it with pread (False, `--no-mmap-bin-files`).
        object_storage_config, s3_config: accepted for signature compatibility; object storage
            (S3, MSC) is not supported here.
    """

    def __init__(
        self,
        path_prefix: str,
        multimodal: bool = False,
        mmap: bool = True,
        object_storage_config=None,
        s3_config=None,
    ) -> None:
        if object_storage_config is not None or s3_config is not None:
            raise ValueError(
                f"IndexedDataset({path_prefix!r}): object storage (S3/MSC) datasets are not "
                "supported; copy the .bin/.idx files to a local or shared file system"
            )
        self.initialize(path_prefix, multimodal, mmap)

    def initialize(self, path_prefix: str, multimodal: bool, mmap: bool) -> None:
        idx_path, bin_path = get_idx_path(path_prefix), get_bin_path(path_prefix)
        missing = [p for p in (idx_path, bin_path) if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"indexed dataset {path_prefix!r} needs both {idx_path} and {bin_path}; missing: "
                f"{', '.join(missing)}. Pass the prefix without .bin/.idx (e.g. my-gpt2_text_document)"
            )
        self.path_prefix = path_prefix
        self.multimodal = multimodal
        self.mmap = mmap
        self.index = _IndexReader(idx_path, multimodal)
        expected, actual = self.index.bin_size(), os.path.getsize(bin_path)
        if actual != expected:
            raise ValueError(
                f"{bin_path} is {actual} bytes but {idx_path} describes {expected} bytes "
                f"({len(self.index)} sequences of {self.index.dtype.__name__}): the two files do not "
                "belong together or one is truncated; write the dataset again"
            )
        self.bin_reader = _MMapBinReader(bin_path) if mmap else _FileBinReader(bin_path)

    def __getstate__(self) -> Tuple[str, bool, bool]:
        # Pickle the prefix, not the maps: data-loader workers reopen the files themselves.
        return self.path_prefix, self.multimodal, self.mmap

    def __setstate__(self, state: Tuple[str, bool, bool]) -> None:
        self.initialize(*state)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx):
        """Sequence `idx` (an int) or a list of sequences (a contiguous slice); with modes when
        the dataset is multimodal."""
        if isinstance(idx, (int, numpy.integer)):
            return self.get(idx)
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if step != 1:
                raise ValueError(f"IndexedDataset slices must be contiguous (step 1), got step {step}")
            lengths = self.index.sequence_lengths[start:stop]
            if len(lengths) == 0:
                tokens, splits = numpy.empty(0, dtype=self.index.dtype), []
            else:
                tokens = self.bin_reader.read(
                    self.index.dtype, int(lengths.sum()), int(self.index.sequence_pointers[start])
                )
                splits = numpy.cumsum(lengths)[:-1]
            sequences = numpy.split(tokens, splits) if len(lengths) else []
            if self.multimodal:
                return sequences, self.index.sequence_modes[start:stop]
            return sequences
        raise TypeError(f"IndexedDataset index must be an int or a slice, got {type(idx).__name__}")

    def get(self, idx: int, offset: int = 0, length: Optional[int] = None):
        """Tokens `offset` to `offset + length` of sequence `idx`, reading nothing else."""
        pointer, sequence_length, mode = self.index[idx]
        if length is None:
            length = sequence_length - offset
        if offset < 0 or length < 0 or offset + length > sequence_length:
            raise IndexError(
                f"get({idx}, offset={offset}, length={length}) reaches past sequence {idx} "
                f"of {sequence_length} tokens in {self.path_prefix}"
            )
        tokens = self.bin_reader.read(
            self.index.dtype, length, pointer + offset * self.index.dtype_size
        )
        return (tokens, mode) if mode is not None else tokens

    @property
    def sequence_lengths(self) -> numpy.ndarray:
        return self.index.sequence_lengths

    @property
    def sequence_pointers(self) -> numpy.ndarray:
        return self.index.sequence_pointers

    @property
    def document_indices(self) -> numpy.ndarray:
        return self.index.document_indices

    def get_document_indices(self) -> numpy.ndarray:
        return self.index.document_indices

    def set_document_indices(self, document_indices: numpy.ndarray) -> None:
        self.index.document_indices = document_indices

    @property
    def sequence_modes(self) -> numpy.ndarray:
        if self.index.sequence_modes is None:
            raise ValueError(
                f"{self.path_prefix} was opened with multimodal=False, so it has no sequence modes"
            )
        return self.index.sequence_modes

    @staticmethod
    def exists(path_prefix: str) -> bool:
        return os.path.exists(get_idx_path(path_prefix)) and os.path.exists(get_bin_path(path_prefix))


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
            raise ValueError(
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
        self._tmp_bin_path = _temporary_path(bin_path)
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

    def add_index(self, path_prefix: str) -> None:
        """Append a whole existing dataset (its documents after ours; same dtype required)."""
        index = _IndexReader(get_idx_path(path_prefix), multimodal=self.multimodal)
        if index.dtype != self.dtype:
            raise ValueError(
                f"cannot merge {path_prefix} ({index.dtype.__name__} tokens) into a dataset of "
                f"{self.dtype.__name__} tokens; both must be built with the same tokenizer dtype"
            )
        bin_path = get_bin_path(path_prefix)
        if not os.path.isfile(bin_path):
            raise FileNotFoundError(f"{bin_path} is missing (its index {index.idx_path} exists)")
        if os.path.getsize(bin_path) != index.bin_size():
            raise ValueError(
                f"{bin_path} is {os.path.getsize(bin_path)} bytes but its index describes "
                f"{index.bin_size()}: the files do not belong together or one is truncated"
            )
        offset = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(numpy.ascontiguousarray(index.sequence_lengths).tobytes())
        self.document_indices.frombytes((index.document_indices[1:] + offset).tobytes())
        if self.multimodal:
            self.sequence_modes.frombytes(numpy.ascontiguousarray(index.sequence_modes).tobytes())
        del index
        with open(bin_path, "rb") as source:
            shutil.copyfileobj(source, self._bin, _COPY_CHUNK_BYTES)

    def finalize(self, idx_path: str) -> None:
        """Write the `.idx`, then move both files to their final names."""
        self._bin.close()
        lengths = numpy.frombuffer(self.sequence_lengths, dtype=numpy.int32)
        pointers = numpy.zeros(len(lengths), dtype=numpy.int64)
        if len(lengths) > 1:
            numpy.cumsum(lengths[:-1], dtype=numpy.int64, out=pointers[1:])
        pointers *= numpy.dtype(self.dtype).itemsize
        tmp_idx_path = _temporary_path(idx_path)
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
