"""Ranks fail together on bad input, so that the user reads one message and no rank hangs.

Some work runs on a few ranks only (tensor-parallel rank 0 reads the data, rank 0 checks --save) or
reads per-rank files (checkpoints). If one rank raised a UserError while the others went on into the
next collective, they would wait until the timeout, or print tracebacks about a lost peer.
``fail_together`` runs the work on every rank, then every rank learns whether any rank failed and,
if so, raises the same error (printed once by rank 0, see megatron.cli.guard).
"""
from typing import Callable, Optional, TypeVar

import torch.distributed as dist

from megatron.core import errors
from megatron.core.errors import UserError

T = TypeVar("T")


def _error_class(name: str):
    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, UserError) else UserError


def fail_together(work: Callable[[], T], group=None) -> T:
    """``work()`` on every rank of ``group`` (default: all); if any rank raised a UserError, every
    rank raises the first such error (by rank order). Other exceptions propagate as they are."""
    failure: Optional[UserError] = None
    result = None
    try:
        result = work()
    except UserError as error:
        failure = error
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        if failure is not None:
            raise failure
        return result
    reports = [None] * dist.get_world_size(group)
    mine = None if failure is None else (type(failure).__name__, str(failure))
    dist.all_gather_object(reports, mine, group=group)
    first = next((report for report in reports if report is not None), None)
    if first is None:
        return result
    if failure is None or (type(failure).__name__, str(failure)) != first:
        failure = _error_class(first[0])(first[1])
    failure.same_on_every_rank = True  # every rank raises it: rank 0 prints it
    raise failure


def check_on_rank_0(check: Callable[[], None], group=None) -> None:
    """Run ``check()`` (which raises a UserError on bad input) on rank 0 only; every rank raises
    what it raised."""
    def work():
        if not dist.is_initialized() or dist.get_rank() == 0:
            check()
    fail_together(work, group)
