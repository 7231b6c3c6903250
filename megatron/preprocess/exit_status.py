"""Commands of the preprocessing package return their exit status instead of exiting.

megatron.cli.guard.main_guard ends a command with sys.exit(status) after printing a user error as
one line; argparse exits too. `exit_status(call)` turns those exits into the returned status, so
`main(argv)` can be called from Python (tests, notebooks) as well as by the console script.
"""
from typing import Callable, List, Optional

from megatron.cli.guard import run_main


def run_command(body: Callable[[Optional[List[str]]], int], prog: str, argv: Optional[List[str]]) -> int:
    """`body(argv)` under main_guard (user errors as one line `<prog>: error: ...`); its status."""
    return exit_status(lambda: run_main(body, prog, argv))


def exit_status(call: Callable[[], int]) -> int:
    try:
        return int(call() or 0)
    except SystemExit as exit_info:
        code = exit_info.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
