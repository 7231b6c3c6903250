"""Megatron's memory-mapped indexed dataset: a `.bin` file of token ids and an `.idx` index.

A dataset is a path prefix P with the files P.bin and P.idx. The byte layout (the "MMIDIDX" format)
is fixed by Megatron-LM and described in docs/preprocessing.md; files written here are read by
Megatron-LM and the other way round, byte for byte.

Only numpy is imported here (no torch), so that tools and data start-up stay quick.
"""

import os
import struct
from enum import Enum
from typing import Optional, Tuple, Type

import numpy

from megatron.core.datasets import fingerprint, index_validation
from megatron.core.errors import DataError, MissingFileError

_INDEX_MAGIC = b"MMIDIDX\x00\x00"
_INDEX_VERSION = 1
# magic, version, dtype code, number of sequences, length of the document-index array
_INDEX_HEADER = struct.Struct("<9sQBQQ")


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
            raise DataError(
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


class _IndexReader:
    """The arrays of an `.idx` file, memory-mapped (nothing is read until it is used).

    Checks what can be checked without reading the arrays, so that a damaged file fails here,
    by name, instead of as a wrong sample later.
    """

    def __init__(self, idx_path: str, multimodal: bool, validate: bool = True) -> None:
        self.idx_path = idx_path
        file_size = os.path.getsize(idx_path)
        with open(idx_path, "rb") as stream:
            head = stream.read(_INDEX_HEADER.size)
        if len(head) < _INDEX_HEADER.size:
            raise DataError(
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
            raise DataError(
                f"{idx_path} does not start with the indexed dataset magic {_INDEX_MAGIC!r} "
                f"(found {magic!r}){hint}: it is not a Megatron .idx file"
            )
        if version != _INDEX_VERSION:
            raise DataError(f"{idx_path} has index version {version}; only version 1 can be read")
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
            raise DataError(
                f"{idx_path} is truncated: its header announces {sequence_count} sequences and "
                f"{document_count} document-index entries{' with modes' if multimodal else ''}, "
                f"which need {needed} bytes, but the file has {file_size}; write it again"
            )
        if document_count < 1:
            raise DataError(f"{idx_path} has an empty document index (at least [0] is required)")

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
        if validate:
            index_validation.check_lengths_and_pointers(
                idx_path, self.sequence_lengths, self.sequence_pointers, self.dtype_size
            )
            index_validation.check_document_indices(idx_path, self.document_indices, sequence_count)

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
                raise DataError(
                    f"{self._bin_path} ended at byte {offset + done} while reading {count} "
                    f"tokens at byte {offset}: the file is shorter than its index says"
                )
            done += got
        return out

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


_VALIDATED = set()


def _file_identity(idx_path: str, bin_path: str) -> Tuple[str, int, int, int, int]:
    """(path, .idx size, .idx mtime, .bin size, .bin mtime): what a repeated check would see."""
    idx, bin_ = os.stat(idx_path), os.stat(bin_path)
    return os.path.abspath(idx_path), idx.st_size, idx.st_mtime_ns, bin_.st_size, bin_.st_mtime_ns


class IndexedDataset:
    """The token sequences of one `.bin`/`.idx` pair.

    Args:
        path_prefix: the files are `path_prefix + ".bin"` and `path_prefix + ".idx"`.
        multimodal: the index carries one int8 mode per sequence after the document index.
        mmap: memory-map the `.bin` (True) or read it with pread (False, `--no-mmap-bin-files`).
        object_storage_config, s3_config: accepted for signature compatibility; object storage
            (S3, MSC) is not supported here.
        check_record_directory: (ours) an index-cache directory; beside it a record remembers
            that this very `.idx` passed the consistency checks, so later runs skip them.
    """

    def __init__(
        self,
        path_prefix: str,
        multimodal: bool = False,
        mmap: bool = True,
        object_storage_config=None,
        s3_config=None,
        check_record_directory: Optional[str] = None,
    ) -> None:
        if object_storage_config is not None or s3_config is not None:
            raise ValueError(
                f"IndexedDataset({path_prefix!r}): object storage (S3/MSC) datasets are not "
                "supported; copy the .bin/.idx files to a local or shared file system"
            )
        self.initialize(path_prefix, multimodal, mmap, check_record_directory=check_record_directory)

    def initialize(self, path_prefix: str, multimodal: bool, mmap: bool, validate: bool = True,
                   check_record_directory: Optional[str] = None) -> None:
        idx_path, bin_path = get_idx_path(path_prefix), get_bin_path(path_prefix)
        missing = [p for p in (idx_path, bin_path) if not os.path.isfile(p)]
        if missing:
            raise MissingFileError(
                f"indexed dataset {path_prefix!r} needs both {idx_path} and {bin_path}; missing: "
                f"{', '.join(missing)}. Pass the prefix without .bin/.idx (e.g. my-gpt2_text_document)"
            )
        self.path_prefix = path_prefix
        self.multimodal = multimodal
        self.mmap = mmap
        # Each pair of files is checked once per process (every split opens it again), and once
        # at all where a record beside the index cache says this very .idx passed.
        key = _file_identity(idx_path, bin_path)
        record = None
        if check_record_directory:
            record = fingerprint.record_path(path_prefix, check_record_directory, "idx_checked")
        validate = validate and key not in _VALIDATED and not fingerprint.was_checked(record, idx_path, key[3])
        self.index = _IndexReader(idx_path, multimodal, validate=validate)
        index_validation.check_bin_size(
            bin_path, idx_path, self.index.bin_size(),
            f"{len(self.index)} sequences of {self.index.dtype.__name__}", actual=key[3],
        )
        if validate:
            fingerprint.remember_checked(record, idx_path, key[3])
        _VALIDATED.add(key)
        self.bin_reader = _MMapBinReader(bin_path) if mmap else _FileBinReader(bin_path)

    def __getstate__(self) -> Tuple[str, bool, bool]:
        # Pickle the prefix, not the maps: data-loader workers reopen the files themselves.
        return self.path_prefix, self.multimodal, self.mmap

    def __setstate__(self, state: Tuple[str, bool, bool]) -> None:
        # Checked when the parent opened it: a worker only reopens the maps.
        self.initialize(*state, validate=False)

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


def __getattr__(name: str):
    # The writer lives in its own module; importable from here as in Megatron Core.
    if name in ("IndexedDatasetBuilder", "_as_token_array"):
        from megatron.core.datasets import indexed_dataset_builder

        return getattr(indexed_dataset_builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
