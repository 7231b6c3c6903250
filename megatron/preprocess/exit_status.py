"""Commands of the preprocessing package return their exit status instead of exiting.

megatron.cli.guard.main_guard ends a command with sys.exit(status) after printing a user error as
one line; argparse exits too. `exit_status(call)` turns those exits into the returned status, so
`main(argv)` can be called from Python (tests, notebooks) as well as by the console script.
"""
from typing import Callable

from megatron.cli.guard import run_main  # noqa: F401 (re-exported for the commands)


def exit_status(call: Callable[[], int]) -> int:
    try:
        return int(call() or 0)
    except SystemExit as exit_info:
        code = exit_info.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
