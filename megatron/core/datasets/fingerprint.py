"""Fingerprints of `.idx` files, and the directory of our sidecar files beside an index cache.

A GPTDataset's cached indices are valid for the sequence lengths they were built from. Megatron's
cache names only hash the description (prefix, split, seed, ...), so data re-tokenized under the
same prefix would silently reuse indices of the old data. We record what the `.idx` was when the
indices were built: its size, mtime, ctime and inode, and a hash of its sequence lengths. All
four unchanged: the same file, nothing is read. Any of them changed: the lengths are hashed; the
same hash means the same indices (a copy, a `touch`), a different one means a rebuild.

The records are our own files: they live in a hidden folder inside the cache directory,
`{cache directory}/.megatron-lite/`, which Megatron-LM never opens (it reads its cache files by
name), so both read the same cache directory and nothing is written outside the one the user gave.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy

from megatron.core.temp_files import remove_dead_temporaries_once, temporary_path

_HASH_CHUNK = 1 << 24  # bytes of lengths hashed per update
# (abs path, size, mtime_ns) -> hash: the splits of one dataset share one .idx.
_HASHES: Dict[Tuple[str, int, int, int, int], str] = {}


SIDECAR_DIRNAME = ".megatron-lite"


def sidecar_directory(cache_directory: str) -> str:
    """Where our files about the caches of `cache_directory` go (a hidden folder inside it)."""
    return os.path.join(os.path.abspath(cache_directory), SIDECAR_DIRNAME)


def hash_lengths(lengths: numpy.ndarray) -> str:
    # SHA-1 (as a checksum, not for security): the fastest of hashlib's with x86/ARM SHA
    # instructions, about 1 GB/s, i.e. 0.4 s for the lengths of 100M sequences.
    digest = hashlib.sha1(usedforsecurity=False)
    view = memoryview(numpy.ascontiguousarray(lengths)).cast("B")
    for begin in range(0, view.nbytes, _HASH_CHUNK):
        digest.update(view[begin : begin + _HASH_CHUNK])
    return digest.hexdigest()


def _identity(stat: os.stat_result) -> dict:
    # Any rewrite changes one of these (a rename gives a new inode, a write a new ctime);
    # only when all are equal is the file taken as unchanged without reading it.
    return {"idx_size": stat.st_size, "idx_mtime_ns": stat.st_mtime_ns,
            "idx_ctime_ns": stat.st_ctime_ns, "idx_inode": stat.st_ino}


@dataclass
class IndexFingerprint:
    """What identifies an `.idx` file's sequence lengths (see the module docstring)."""

    idx_size: int
    idx_mtime_ns: int
    idx_ctime_ns: int
    idx_inode: int
    lengths_hash: str

    @classmethod
    def of(cls, idx_path: str, lengths: numpy.ndarray) -> "IndexFingerprint":
        stat = os.stat(idx_path)
        key = (os.path.abspath(idx_path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        if key not in _HASHES:
            _HASHES[key] = hash_lengths(lengths)
        return cls(**_identity(stat), lengths_hash=_HASHES[key])

    @staticmethod
    def same_file(record: dict, idx_path: str) -> bool:
        """True when `idx_path` is, by its size, times and inode, the file of the record."""
        return all(record.get(k) == v for k, v in _identity(os.stat(idx_path)).items())

    def difference(self, record: dict) -> Optional[str]:
        """None when the record describes the same lengths, else what differs (for the log)."""
        if record.get("lengths_hash") == self.lengths_hash:
            return None
        if record.get("idx_size") != self.idx_size:
            return f"its size changed from {record.get('idx_size')} to {self.idx_size} bytes"
        return "its sequence lengths changed"

    def as_record(self) -> dict:
        return asdict(self)


def record_path(path_prefix: str, cache_directory: str, kind: str) -> str:
    """Where our record of `kind` about the dataset `path_prefix` goes, beside `cache_directory`
    (one per dataset: its name plus a hash of its absolute path, as datasets share directories)."""
    tag = hashlib.md5(os.path.abspath(path_prefix).encode("utf-8"), usedforsecurity=False).hexdigest()
    name = f"{kind}-{os.path.basename(path_prefix)}-{tag[:12]}.json"
    return os.path.join(sidecar_directory(cache_directory), name)


def was_checked(path: Optional[str], idx_path: str, bin_size: int) -> bool:
    """True when the record at `path` says this very `.idx` (size, times, inode) passed the
    consistency checks with a `.bin` of `bin_size` bytes."""
    record = read_record(path) if path else None
    return (record is not None and record.get("bin_size") == bin_size
            and IndexFingerprint.same_file(record, idx_path))


def remember_checked(path: Optional[str], idx_path: str, bin_size: int) -> None:
    if path:
        record = _identity(os.stat(idx_path))
        record.update(idx_path=os.path.abspath(idx_path), bin_size=bin_size)
        write_record(path, record)  # a read-only place: checked again next time, nothing else


def read_record(path: str) -> Optional[dict]:
    """A sidecar's JSON object, or None when it is missing or unreadable."""
    try:
        with open(path, "rt", encoding="utf-8") as reader:
            record = json.load(reader)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(path: str, record: dict) -> bool:
    """Write a sidecar atomically; False (and nothing written) when its directory is not writable."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        remove_dead_temporaries_once(directory)
        temporary = temporary_path(path, unique=True)
        try:
            with open(temporary, "wt", encoding="utf-8") as writer:
                json.dump(record, writer, indent=1, sort_keys=True)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except OSError:
        return False
    return True
