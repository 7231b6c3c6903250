"""How every command ends when the input is wrong: one line that names the flag or file and the fix,
no traceback, the error's exit code (2 for bad input).

    with main_guard("pretrain_gpt.py"):
        ...

A ``UserError`` (megatron/core/errors.py) is printed as ``<prog>: error: <message>``. An error every
rank raises alike (flag validation, or one the ranks agreed on, see ``agree_on_user_errors``) is
printed by rank 0 only; any other by each rank that raised it, prefixed with its rank. Every other
exception is a bug and keeps its traceback. ``MEGATRON_TRACEBACK=1`` shows the traceback of user
errors too.
"""
import contextlib
import json
import os
import sys
import time

from megatron.core.errors import UserError

TRACEBACK_ENV = "MEGATRON_TRACEBACK"


def _rank_and_world():
    # torch.distributed only if this command already loaded torch: a torch-free tool's error must
    # not pay a second for importing it.
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def _tell_torchrun(message: str) -> None:
    """Under torchrun, write the message where its failure summary reads each rank's cause (in place
    of "To enable traceback see ...")."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as stream:
            # torchrun's own format; its summary shows py_callstack as the rank's "traceback".
            json.dump({"message": {"message": message, "extraInfo": {"py_callstack": message,
                                                                     "timestamp": str(int(time.time()))}}}, stream)
    except OSError:
        pass  # the summary then says less; the message was printed already


def format_user_error(prog: str, error: UserError, rank: int, world_size: int) -> str:
    prefix = f"[rank {rank}] " if world_size > 1 and not error.same_on_every_rank else ""
    message = str(error).strip() or type(error).__name__
    return f"{prefix}{prog}: error: {message}"


# What gloo and NCCL say when the other end of a collective went away.
_LOST_PEER_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
                      "remote process exited", "NCCL communicator was aborted", "Socket Timeout")


def _is_lost_peer(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, RuntimeError) and any(marker in text for marker in _LOST_PEER_MARKERS)


@contextlib.contextmanager
def main_guard(prog: str):
    """Run a command's body; turn a UserError into its one-line message and exit code."""
    try:
        yield
    except UserError as error:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        rank, world = _rank_and_world()
        line = format_user_error(prog, error, rank, world)
        if rank == 0 or not error.same_on_every_rank:
            print(line, file=sys.stderr, flush=True)
        _tell_torchrun(line)
        sys.exit(error.exit_code)
    except Exception as error:
        # A rank that lost a peer (which failed first and printed why) is not a second bug to
        # report: one line instead of a traceback per rank.
        rank, world = _rank_and_world()
        if world > 1 and _is_lost_peer(error) and os.environ.get(TRACEBACK_ENV, "") in ("", "0"):
            print(f"[rank {rank}] {prog}: stopped: lost contact with another rank, which failed first "
                  f"(its message is above; {TRACEBACK_ENV}=1 shows this rank's traceback)",
                  file=sys.stderr, flush=True)
            sys.exit(1)
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


def run_main(main, prog: str, argv=None) -> int:
    """``main(argv)`` under main_guard; returns its status (None counts as 0)."""
    with main_guard(prog):
        status = main(argv)
    return int(status or 0)
