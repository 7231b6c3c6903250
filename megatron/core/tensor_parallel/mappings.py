"""Autograd-aware collectives of tensor and sequence parallelism.

Activations are laid out [sequence, batch, hidden]. Tensor parallelism splits the last dimension
(heads / ffn / vocab); sequence parallelism splits the first. Each function is the identity when the
tensor-parallel group has one rank.
"""
import torch
import torch.distributed as dist

from megatron.core import parallel_state
from megatron.core.utils import get_pg_rank, get_pg_size, reject_unsupported


def resolve_tp_group(group=None, is_expert: bool = False):
    """``group``, or the global layout's (expert) tensor-parallel group when None."""
    if group is not None:
        return group
    if is_expert:
        return parallel_state.get_expert_tensor_parallel_group(check_initialized=False)
    return parallel_state.get_tensor_model_parallel_group(check_initialized=False)


def _all_reduce(x: torch.Tensor, group) -> torch.Tensor:
    if get_pg_size(group) == 1:
        return x
    x = x.contiguous()
    dist.all_reduce(x, group=group)
    return x


def _split_last(x: torch.Tensor, group) -> torch.Tensor:
    size = get_pg_size(group)
    if size == 1:
        return x
    return x.chunk(size, dim=-1)[get_pg_rank(group)].contiguous()


def _gather_last(x: torch.Tensor, group) -> torch.Tensor:
    size = get_pg_size(group)
    if size == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x, group=group)
    return torch.cat(parts, dim=-1)


def _check_sequence_split(x: torch.Tensor, size: int) -> None:
    if x.size(0) % size != 0:
        raise ValueError(f"sequence length {x.size(0)} is not divisible by the tensor-parallel size {size} "
                         "(needed by --sequence-parallel)")


def _split_first(x: torch.Tensor, group) -> torch.Tensor:
    size = get_pg_size(group)
    if size == 1:
        return x
    _check_sequence_split(x, size)
    return x.chunk(size, dim=0)[get_pg_rank(group)].contiguous()


def _gather_first(x: torch.Tensor, group) -> torch.Tensor:
    size = get_pg_size(group)
    if size == 1:
        return x
    x = x.contiguous()
    out = torch.empty((x.size(0) * size,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    dist.all_gather_into_tensor(out, x, group=group)
    return out


def _reduce_scatter_first(x: torch.Tensor, group) -> torch.Tensor:
    size = get_pg_size(group)
    if size == 1:
        return x
    _check_sequence_split(x, size)
    x = x.contiguous()
    out = torch.empty((x.size(0) // size,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    dist.reduce_scatter_tensor(out, x, group=group)
    return out


class _CopyToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad, ctx.group), None


class _ReduceFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        return _all_reduce(x, group)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _ScatterToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _split_last(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _gather_last(grad, ctx.group), None


class _GatherFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _gather_last(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _split_last(grad, ctx.group), None


class _ScatterToSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _split_first(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad, ctx.group), None


class _GatherFromSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tensor_parallel_output_grad, group):
        ctx.tensor_parallel_output_grad, ctx.group = tensor_parallel_output_grad, group
        return _gather_first(x, group)

    @staticmethod
    def backward(ctx, grad):
        # When the consumer is tensor-parallel (a column-parallel linear), every rank holds a partial
        # gradient of the full sequence: sum them and keep this rank's slice. Otherwise the gradient
        # is already complete on every rank and only needs slicing.
        if ctx.tensor_parallel_output_grad:
            return _reduce_scatter_first(grad, ctx.group), None, None
        return _split_first(grad, ctx.group), None, None


class _ReduceScatterToSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _reduce_scatter_first(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad, ctx.group), None


def copy_to_tensor_model_parallel_region(input_, group=None):
    """Identity forward; all-reduce of the gradient (input of a column-parallel layer)."""
    return _CopyToRegion.apply(input_, resolve_tp_group(group))


def reduce_from_tensor_model_parallel_region(input_, group=None):
    """All-reduce forward (output of a row-parallel layer); identity backward."""
    return _ReduceFromRegion.apply(input_, resolve_tp_group(group))


def scatter_to_tensor_model_parallel_region(input_, group=None):
    """Keep this rank's slice of the last dimension; all-gather of the gradient."""
    return _ScatterToRegion.apply(input_, resolve_tp_group(group))


def gather_from_tensor_model_parallel_region(input_, group=None):
    """All-gather along the last dimension; slice of the gradient."""
    return _GatherFromRegion.apply(input_, resolve_tp_group(group))


def scatter_to_sequence_parallel_region(input_, group=None):
    """Keep this rank's slice of the sequence (first) dimension."""
    return _ScatterToSequenceRegion.apply(input_, resolve_tp_group(group))


def gather_from_sequence_parallel_region(input_, tensor_parallel_output_grad: bool = True, group=None,
                                         output_split_sizes=None, use_global_buffer: bool = False):
    """All-gather along the sequence dimension (equal splits)."""
    reject_unsupported("gather_from_sequence_parallel_region", {"use_global_buffer": False},
                       output_split_sizes=output_split_sizes, use_global_buffer=use_global_buffer)
    return _GatherFromSequenceRegion.apply(input_, tensor_parallel_output_grad, resolve_tp_group(group))


def reduce_scatter_to_sequence_parallel_region(input_, group=None, input_split_sizes=None,
                                               use_global_buffer: bool = False):
    """Sum over tensor-parallel ranks and keep this rank's slice of the sequence (equal splits)."""
    reject_unsupported("reduce_scatter_to_sequence_parallel_region", {"use_global_buffer": False},
                       input_split_sizes=input_split_sizes, use_global_buffer=use_global_buffer)
    return _ReduceScatterToSequenceRegion.apply(input_, resolve_tp_group(group))


def all_gather_last_dim_from_tensor_parallel_region(input_, group=None):
    """Forward-only gather (no autograd), e.g. for logits at generation time."""
    return _gather_last(input_, resolve_tp_group(group))
