"""The directory an output prefix writes into: created, writable, and cleared of what killed runs
left there (their temporary files only; megatron/core/datasets/temp_files.py)."""

import os

from megatron.core.temp_files import remove_dead_temporaries
from megatron.core.errors import ConfigError


def prepare_output_directory(prefix: str, log=None) -> str:
    """The directory of `prefix` (--output-prefix), ready to write into; ConfigError if it cannot be."""
    directory = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--output-prefix {prefix}: cannot create {directory} ({err.strerror})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"--output-prefix {prefix}: {directory} is not writable")
    remove_dead_temporaries(directory, log)
    return directory
