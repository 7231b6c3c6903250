"""Temporary names for files written atomically, and the removal of those a dead process left.

Every output (a dataset's .bin/.idx, an index-cache array, a sidecar, a checkpoint file or the
tokenizer folder copied into a checkpoint) is written under
`{final name}.tmp-{host}-{pid}` (cache files add a random part before `.tmp-` so that threads of
one process do not collide) and renamed when complete. A process killed half way leaves that
file behind. `remove_dead_temporaries(directory)` deletes such files, and only those: the name
must be ours, the host this one, the pid no longer running, and the file untouched for a couple
of minutes (containers that share a host name but not a pid namespace see each other's live
pids as dead; a live writer keeps its file fresh). A file of a live process, of another host
(a shared file system) or with any other name is never touched.
"""

import functools
import logging
import os
import re
import shutil
import time
from typing import List, Optional

from megatron.core.datasets.utils import log_single_rank

logger = logging.getLogger(__name__)

# Younger than this, a temporary file may belong to a writer we cannot see (see above).
MIN_AGE_SECONDS = 120.0
# Only final names with these endings (our datasets, index caches, sidecars, checkpoint files and
# the tokenizer files copied into checkpoints), and folders: a folder named so is ours beyond doubt.
_OUR_SUFFIXES = (".bin", ".idx", ".npy", ".txt", ".json", ".pt", ".model")
# The host part may hold '-' itself: the pid is the last run of digits after the last '-'.
_TEMPORARY = re.compile(r"^(?P<final>.+)\.tmp-(?P<host>[A-Za-z0-9._-]+)-(?P<pid>[0-9]+)$")


@functools.lru_cache(maxsize=1)
def this_host() -> str:
    """The host name as it goes into temporary names (characters outside [A-Za-z0-9._-] -> '_')."""
    if hasattr(os, "uname"):
        name = os.uname().nodename  # what socket.gethostname() gives, without importing socket
    else:
        import socket
        name = socket.gethostname()
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "localhost"


def temporary_path(final_path: str, unique: bool = False) -> str:
    """The temporary name of `final_path` for this process; `unique` adds a random part (for
    writers that may run in several threads of one process)."""
    stem = final_path
    if unique:
        directory, name = os.path.split(final_path)
        stem = os.path.join(directory, f".{name}.{os.urandom(4).hex()}")
    return f"{stem}.tmp-{this_host()}-{os.getpid()}"


def _parse(name: str, is_folder: bool = False):
    match = _TEMPORARY.match(name)
    if match is None:
        return None
    final = match.group("final")
    if final.startswith("."):  # a unique name: ".{name}.{random}"
        final = final[1:].rsplit(".", 1)[0]
    if not is_folder and not final.endswith(_OUR_SUFFIXES):
        return None
    return match.group("host"), int(match.group("pid"))


def pid_is_running(pid: int) -> bool:
    """True when a process `pid` exists on this host (also when it is another user's)."""
    if pid <= 0:
        return True  # not a real pid: do not treat as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def dead_temporaries(directory: str, recursive: bool = False) -> List[str]:
    """Our temporary files (and folders) in `directory` (and below it, when `recursive`) whose
    writer, on this host, is no longer running."""
    if recursive:
        found = []
        for folder, subfolders, _ in os.walk(directory):
            found += dead_temporaries(folder)
            subfolders[:] = [s for s in subfolders if _parse(s, is_folder=True) is None]  # not into ours
        return sorted(found)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    host = this_host()
    now = time.time()
    found = []
    for name in names:
        path = os.path.join(directory, name)
        parsed = _parse(name, is_folder=os.path.isdir(path))
        if parsed is None or parsed[0] != host or parsed[1] == os.getpid():
            continue
        try:
            fresh = now - os.stat(path).st_mtime < MIN_AGE_SECONDS
        except OSError:
            continue  # gone meanwhile
        if not fresh and not pid_is_running(parsed[1]):
            found.append(path)
    return sorted(found)


def remove_dead_temporaries(directory: Optional[str], log=None, recursive: bool = False) -> List[str]:
    """Delete what `dead_temporaries` finds; returns the paths removed. Failures to delete (a
    read-only directory, a file removed meanwhile) are ignored: the files are harmless."""
    if not directory:
        return []
    removed = []
    for path in dead_temporaries(directory, recursive):
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            continue
        removed.append(path)
    if removed:
        message = (
            f"Removed {len(removed)} temporary file(s) left in {directory} by processes that "
            f"died on this host: {', '.join(os.path.basename(p) for p in removed[:5])}"
            + (" ..." if len(removed) > 5 else "")
        )
        if log is not None:
            log(message)
        else:
            log_single_rank(logger, logging.WARNING, message)
    return removed


_swept = set()


def remove_dead_temporaries_once(directory: Optional[str]) -> None:
    """remove_dead_temporaries, at most once per directory and process (datasets open the same
    cache directory once per split)."""
    if not directory:
        return
    key = os.path.abspath(directory)
    if key in _swept:
        return
    _swept.add(key)
    remove_dead_temporaries(directory)
