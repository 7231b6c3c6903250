"""Gradient buffers cut into buckets: the unit of data-parallel communication.

A buffer holds the gradients of all parameters of one gradient dtype that are reduced over one
group, in one contiguous tensor; each parameter's ``main_grad`` is a view into it. The buffer is
cut into buckets of about ``bucket_size`` elements, filled in reverse parameter order (roughly the
order backward produces gradients), so the first bucket is complete early in the backward pass
and its collective can run while backward goes on. Each bucket is padded to a multiple of the
group size, so that it splits into equal per-rank shards (the distributed optimizer's unit).

For the distributed optimizer the buffer also holds the parameters themselves (``param_data``, in
the same layout: each parameter's ``.data`` is a view into it), so that the updated shards of all
ranks are all-gathered straight into the model's weights, bucket by bucket.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.distributed as dist

from megatron.core.utils import get_pg_size


def default_bucket_size(dp_size: int) -> int:
    """Megatron's default: big enough to keep the link busy, growing with the group size."""
    return max(40_000_000, 1_000_000 * dp_size)


@dataclass
class GradBucket:
    """A contiguous slice of a buffer's ``grad_data`` and the parameters whose gradients live in it."""

    index: int
    params: List[torch.nn.Parameter]
    grad_data: torch.Tensor  # the bucket's view, padding included
    offset: int  # where the view starts in the buffer
    numel_unpadded: int
    group_size: int
    ready: Set[int] = field(default_factory=set)  # ids of params whose last gradient has arrived
    handle: Optional[object] = None  # the async collective's work, once launched
    launched: bool = False
    param_data: Optional[torch.Tensor] = None  # the parameters' view (distributed optimizer only)
    param_gather_handle: Optional[object] = None  # the async all-gather of updated parameters
    # Reduce-scatter (each rank keeps its shard's sum) instead of all-reduce: the distributed
    # optimizer only reads its own shard. A bucket holding a gradient that is summed over another
    # group afterwards (the tied embedding over the pipeline) stays all-reduced: the shard ranges of
    # the two stages' buffers differ, so only a whole gradient can be summed between them.
    reduce_scatter: bool = False

    def shard_range(self, rank: int) -> Tuple[int, int]:
        """[start, end) of ``rank``'s shard, in buffer coordinates (the bucket divides evenly)."""
        shard = self.grad_data.numel() // self.group_size
        start = self.offset + rank * shard
        return start, start + shard

    def shard_of(self, bucket_view: torch.Tensor, rank: int) -> torch.Tensor:
        """``rank``'s shard of one of this bucket's views (``grad_data`` or ``param_data``)."""
        shard = bucket_view.numel() // self.group_size
        return bucket_view[rank * shard:(rank + 1) * shard]

    def reset(self) -> None:
        self.ready.clear()
        self.handle = None
        self.launched = False


class ParamAndGradBuffer:
    """The gradient buffer of one (gradient dtype, reduce group), cut into buckets."""

    def __init__(self, params: List[torch.nn.Parameter], dtype: torch.dtype, group_name: str, group,
                 bucket_size: Optional[int], with_param_data: bool = False,
                 all_reduce_params: Optional[Set[int]] = None):
        self.dtype = dtype
        self.group_name, self.group = group_name, group
        self.group_size = get_pg_size(group)
        pad = self.group_size
        # Reverse order: the last parameters are the first to get gradients in backward.
        ordered = list(reversed(params))
        plans: List[Tuple[List[torch.nn.Parameter], int, int]] = []  # (params, start, unpadded numel)
        current: List[torch.nn.Parameter] = []
        start = offset = 0
        for param in ordered:
            current.append(param)
            offset += param.numel()
            if bucket_size is not None and offset - start >= bucket_size:
                plans.append((current, start, offset - start))
                offset = start = _round_up(offset, pad)
                current = []
        if current:
            plans.append((current, start, offset - start))
            offset = _round_up(offset, pad)
        self.numel = offset
        self.grad_data = torch.zeros(self.numel, dtype=dtype, device=params[0].device)
        self.param_data: Optional[torch.Tensor] = None
        if with_param_data:
            self.param_data = torch.zeros(self.numel, dtype=params[0].dtype, device=params[0].device)
        # Where each parameter's gradient sits in the buffer, and in which bucket.
        self.param_index_map: Dict[int, Tuple[int, int, int]] = {}
        self.buckets: List[GradBucket] = []
        for index, (bucket_params, bucket_start, unpadded) in enumerate(plans):
            padded = _round_up(unpadded, pad)
            bucket = GradBucket(index, bucket_params, self.grad_data[bucket_start:bucket_start + padded],
                                bucket_start, unpadded, self.group_size)
            self.buckets.append(bucket)
            if self.param_data is not None:
                bucket.param_data = self.param_data[bucket_start:bucket_start + padded]
                bucket.reduce_scatter = not any(id(p) in (all_reduce_params or ()) for p in bucket_params)
            position = bucket_start
            for param in bucket_params:
                param.main_grad = self.grad_data[position:position + param.numel()].view_as(param)
                if self.param_data is not None:
                    # The weights move into the buffer: the all-gather then writes them in place.
                    view = self.param_data[position:position + param.numel()].view_as(param)
                    view.copy_(param.data)
                    param.data = view
                self.param_index_map[id(param)] = (position, position + param.numel(), index)
                position += param.numel()
        self._bucket_of = {id(p): bucket for bucket in self.buckets for p in bucket.params}
        self._next_to_launch = 0

    def bucket_of(self, param: torch.nn.Parameter) -> GradBucket:
        return self._bucket_of[id(param)]

    def mark_ready(self, param: torch.nn.Parameter, launch) -> None:
        """``param``'s gradient is final for this step: launch every bucket that is now complete,
        strictly in bucket order, so all ranks issue the same collectives in the same order."""
        bucket = self._bucket_of[id(param)]
        bucket.ready.add(id(param))
        while self._next_to_launch < len(self.buckets):
            candidate = self.buckets[self._next_to_launch]
            if len(candidate.ready) < len(candidate.params):
                return
            launch(self, candidate)
            self._next_to_launch += 1

    def launch_remaining(self, launch) -> None:
        """Launch the buckets not launched yet (some of their parameters got no gradient)."""
        for bucket in self.buckets[self._next_to_launch:]:
            launch(self, bucket)
        self._next_to_launch = len(self.buckets)

    def reset_communication(self) -> None:
        """Forget the step's launches (the gradients stay)."""
        for bucket in self.buckets:
            bucket.reset()
        self._next_to_launch = 0

    def reset(self) -> None:
        """Zero the gradients and forget the step's communication state."""
        self.grad_data.zero_()
        self.reset_communication()


# torch 2.13 renamed the flat collectives (the old names warn); older torch only has the old names.
all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_flat = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def launch_bucket_reduction(bucket: GradBucket, group, per_token_loss: bool, average_in_collective: bool,
                            async_op: bool) -> None:
    """All-reduce (or reduce-scatter, see GradBucket.reduce_scatter) the bucket: a sum for per-token
    losses (the optimizer divides by the token count later), otherwise the mean over the group — AVG
    inside the collective where NCCL offers it (gloo has no AVG op), else scaled by 1/size first."""
    if bucket.launched:
        return
    bucket.launched = True
    if bucket.group_size == 1:
        return
    op = dist.ReduceOp.SUM
    if not per_token_loss:
        if average_in_collective and dist.get_backend(group) == "nccl":
            op = dist.ReduceOp.AVG
        else:
            bucket.grad_data.mul_(1.0 / bucket.group_size)
    if bucket.reduce_scatter:
        # In place: this rank's shard of the bucket receives the reduced shard.
        output = bucket.shard_of(bucket.grad_data, dist.get_rank(group))
        bucket.handle = reduce_scatter_flat(output, bucket.grad_data, op=op, group=group, async_op=async_op)
    else:
        bucket.handle = dist.all_reduce(bucket.grad_data, op=op, group=group, async_op=async_op)


def launch_param_gather(bucket: GradBucket, group, async_op: bool) -> None:
    """All-gather the updated parameter shards of every rank into the bucket's ``param_data``."""
    if bucket.group_size == 1:
        return
    local = bucket.shard_of(bucket.param_data, dist.get_rank(group))
    bucket.param_gather_handle = all_gather_flat(bucket.param_data, local, group=group,
                                                             async_op=async_op)


def wait_param_gather(bucket: GradBucket) -> None:
    if bucket.param_gather_handle is not None:
        bucket.param_gather_handle.wait()
        bucket.param_gather_handle = None
