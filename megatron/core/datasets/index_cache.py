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
* A cache directory that cannot be written is a warning, not a crash: the indices stay in memory.
"""

import logging
import os
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import numpy

from megatron.core.datasets.utils import log_single_rank

logger = logging.getLogger(__name__)

# name -> (allowed dtypes, exact shape); a None dimension is not checked.
Expectations = Dict[str, Tuple[Sequence[numpy.dtype], Tuple[Optional[int], ...]]]


class IndexCache:
    """The cache files of one dataset: `{directory}/{md5}-{class_name}-{split}-*`."""

    def __init__(
        self, directory: str, description_hash: str, class_name: str, split: Optional[str]
    ):
        self.directory = directory
        base = f"{description_hash}-{class_name}" + (f"-{split}" if split else "")
        self._base = os.path.join(directory, base)

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
        if not self.exists(names):
            return None
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
        return True

    def _write_atomically(self, final_path: str, write) -> None:
        directory, name = os.path.split(final_path)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(handle, "wb") as writer:
                write(writer)
                writer.flush()
                os.fsync(writer.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, final_path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
