"""The options system's error type, and the helper older entry scripts use to report it."""

import contextlib
import sys

# One class for a bad command line everywhere: the flag system raises it, megatron.cli.guard prints it.
from megatron.core.errors import ConfigError  # noqa: F401  (the public name of this module)


@contextlib.contextmanager
def exit_on_config_error(stream=None):
    """Run the body; on ConfigError print `error: <message>` and exit with status 2.

    Status 2 is argparse's convention for a bad command line, so shell scripts that test for it
    keep working. Only ConfigError is caught here (megatron.cli.guard.main_guard catches every
    user error): a bug elsewhere still shows its traceback.
    """
    try:
        yield
    except ConfigError as error:
        print(f"error: {error}", file=stream or sys.stderr, flush=True)
        sys.exit(2)
