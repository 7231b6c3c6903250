"""The one error type of the options system, and the helper entry scripts use to report it."""

import contextlib
import sys


class ConfigError(ValueError):
    """A bad command line or config file: the message names the flag or file and the fix.

    It is a ValueError so callers that already catch ValueError keep working; argparse's own
    exit-on-error is replaced by it so tests and tools can catch every configuration mistake.
    """


@contextlib.contextmanager
def exit_on_config_error(stream=None):
    """Run the body; on ConfigError print `error: <message>` and exit with status 2.

    Status 2 is argparse's convention for a bad command line, so shell scripts that test for it
    keep working. Only ConfigError is caught: a bug elsewhere still shows its traceback.
    """
    try:
        yield
    except ConfigError as error:
        print(f"error: {error}", file=stream or sys.stderr, flush=True)
        sys.exit(2)
