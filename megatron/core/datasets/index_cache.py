"""The on-disk index cache (--data-cache-path), with Megatron's file names and layout.

A dataset's indices live in `{md5}-{Class}-{split}-{name}.npy` plus `{md5}-{Class}-{split}-
description.txt` (plain numpy.save files and the JSON description), so Megatron-LM and we read
each other's caches.

What we add:
* Writes are atomic: each file goes to a unique temporary name in the same directory and is
  renamed into place, the description last. Two jobs (or two nodes of one job on a shared file
  system) that race write identical bytes, and a reader never sees a half-written file.
* Loads are validated: the description must match, and every array must have the dtype and
  shape the dataset computes for itself. A truncated, corrupted or stale file (say, the data
  was re-tokenized under the same path) is reported and the indices are rebuilt.
* Loads know which data they were built from (fingerprint.py): for a dataset read from an `.idx`,
  a sidecar file of ours (in the hidden folder `{directory}/.megatron-lite/`, beside
  Megatron's files) records the `.idx` size, mtime and a hash of its sequence lengths. A changed
  `.idx` is reported and the indices rebuilt. A cache without our sidecar (written by Megatron-LM)
  is used when it is newer than the `.idx` (it was built after the data was last written) and
  gets a sidecar then; when the `.idx` is newer, the data may have been rewritten since, and the
  indices are rebuilt.
* Temporary files that a dead process left in the directory are removed (temp_files.py).
* A cache directory that cannot be written is a warning, not a crash: the indices stay in memory.
"""

import logging
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy

from megatron.core.datasets import fingerprint
from megatron.core.temp_files import remove_dead_temporaries_once, temporary_path
from megatron.core.datasets.utils import log_single_rank

logger = logging.getLogger(__name__)

def default_cache_directory(path_prefix: str, class_name: str = "GPTDataset") -> str:
    """Megatron's cache directory without --data-cache-path: next to the data, in a directory
    named like the prefix ({prefix}/cache/{class}_indices)."""
    return os.path.join(path_prefix, "cache", f"{class_name}_indices")


# name -> (allowed dtypes, exact shape); a None dimension is not checked.
Expectations = Dict[str, Tuple[Sequence[numpy.dtype], Tuple[Optional[int], ...]]]


class IndexCache:
    """The cache files of one dataset: `{directory}/{md5}-{class_name}-{split}-*`."""

    def __init__(
        self,
        directory: str,
        description_hash: str,
        class_name: str,
        split: Optional[str],
        source_idx: Optional[str] = None,
        source_lengths: Optional[numpy.ndarray] = None,
    ):
        """`source_idx` / `source_lengths`: the `.idx` file the indices are computed from and its
        sequence lengths (None when they do not come from a file, e.g. mock data or blends)."""
        self.directory = directory
        base = f"{description_hash}-{class_name}" + (f"-{split}" if split else "")
        self._base = os.path.join(directory, base)
        self.source_idx = source_idx
        self.source_lengths = source_lengths
        self.sidecar_path = os.path.join(
            fingerprint.sidecar_directory(directory), f"{base}-fingerprint.json"
        )

    def path(self, affix: str) -> str:
        return f"{self._base}-{affix}"

    @property
    def description_path(self) -> str:
        return self.path("description.txt")

    def array_path(self, name: str) -> str:
        return self.path(f"{name}.npy")

    def exists(self, names: Sequence[str]) -> bool:
        paths = [self.description_path] + [self.array_path(n) for n in names]
        return all(os.path.isfile(p) for p in paths)

    def load(
        self, description: str, expectations: Expectations, mmap: bool = True
    ) -> Optional[Dict[str, numpy.ndarray]]:
        """The cached arrays if all are present and valid; None (after a warning if some files
        were there but wrong) otherwise."""
        names = list(expectations)
        remove_dead_temporaries_once(self.directory)
        if not self.exists(names):
            return None
        if self.source_idx is not None:
            problem = self._source_problem()
            if problem is not None:
                return self._reject(problem)
        try:
            with open(self.description_path, "rt") as reader:
                cached_description = reader.read()
        except (OSError, UnicodeDecodeError) as error:
            return self._reject(f"cannot read {self.description_path}: {error}")
        if cached_description != description:
            return self._reject(
                f"{self.description_path} describes a different dataset than this one"
            )
        arrays = {}
        for name, (dtypes, shape) in expectations.items():
            path = self.array_path(name)
            try:
                array = numpy.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
            except (OSError, ValueError, EOFError) as error:
                return self._reject(f"cannot load {path}: {error}")
            if array.dtype not in [numpy.dtype(d) for d in dtypes]:
                return self._reject(
                    f"{path} has dtype {array.dtype}, expected one of "
                    f"{', '.join(numpy.dtype(d).name for d in dtypes)}"
                )
            if len(array.shape) != len(shape) or any(
                want is not None and got != want for got, want in zip(array.shape, shape)
            ):
                return self._reject(
                    f"{path} has shape {array.shape}, expected {shape}: it was built for other "
                    "data (were the .bin/.idx files rewritten under the same path?)"
                )
            arrays[name] = array
        return arrays

    def _source_problem(self) -> Optional[str]:
        """Why the cached files may not belong to the `.idx` as it is now; None if they do."""
        idx = self.source_idx
        record = fingerprint.read_record(self.sidecar_path)
        description_mtime = os.stat(self.description_path).st_mtime_ns
        if record is None or record.get("description_mtime_ns") != description_mtime:
            # Not described by a sidecar of ours (written by Megatron-LM, or rewritten since).
            if description_mtime < os.stat(idx).st_mtime_ns:
                return (
                    f"they have no fingerprint of ours and {idx} is newer than they are, so the "
                    "data may have been rewritten after they were built"
                )
            self._write_sidecar(description_mtime)
            return None
        if fingerprint.IndexFingerprint.same_file(record, idx):
            return None
        current = fingerprint.IndexFingerprint.of(idx, self.source_lengths)
        difference = current.difference(record)
        if difference is not None:
            return f"{idx} changed since they were built ({difference})"
        self._write_sidecar(description_mtime)  # same lengths, new mtime: remember it
        return None

    def _write_sidecar(self, description_mtime: int) -> None:
        record = fingerprint.IndexFingerprint.of(self.source_idx, self.source_lengths).as_record()
        record.update(idx_path=os.path.abspath(self.source_idx), description_mtime_ns=description_mtime)
        if not fingerprint.write_record(self.sidecar_path, record):
            log_single_rank(
                logger,
                logging.DEBUG,
                f"Could not write {self.sidecar_path}; the cache is checked by mtime next time",
            )

    def _reject(self, reason: str) -> None:
        log_single_rank(
            logger,
            logging.WARNING,
            f"Ignoring the cached indices {self._base}-*: {reason}. Rebuilding them.",
        )
        return None

    def save(self, description: str, arrays: Dict[str, numpy.ndarray]) -> bool:
        """Write the arrays, then the description, each atomically. False if it could not."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            remove_dead_temporaries_once(self.directory)
            for name, array in arrays.items():
                self._write_atomically(self.array_path(name), lambda f, a=array: numpy.save(f, a))
            self._write_atomically(
                self.description_path, lambda f: f.write(description.encode("utf-8"))
            )
        except OSError as error:
            log_single_rank(
                logger,
                logging.WARNING,
                f"Could not write the dataset index cache in {self.directory} ({error}); the "
                "indices are kept in memory only. Point --data-cache-path at a writable directory "
                "to reuse them across runs.",
            )
            return False
        if self.source_idx is not None:
            self._write_sidecar(os.stat(self.description_path).st_mtime_ns)
        return True

    def _write_atomically(self, final_path: str, write) -> None:
        temporary = temporary_path(final_path, unique=True)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(handle, "wb") as writer:
                write(writer)
                writer.flush()
                os.fsync(writer.fileno())
            os.replace(temporary, final_path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
