"""Autograd-aware collectives of tensor and sequence parallelism.

Activations are laid out [sequence, batch, hidden]. Tensor parallelism splits the last dimension
(heads / ffn / vocab); sequence parallelism splits the first. Each function is the identity when the
tensor-parallel group has one rank.
"""
import torch
import torch.distributed as dist

from megatron.core import parallel_state


def _tp_group():
    return parallel_state.get_tensor_model_parallel_group()


def _tp_size() -> int:
    return parallel_state.get_tensor_model_parallel_world_size()


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _tp_size() == 1:
        return x
    x = x.contiguous()
    dist.all_reduce(x, group=_tp_group())
    return x


def _split_last(x: torch.Tensor) -> torch.Tensor:
    size = _tp_size()
    if size == 1:
        return x
    rank = parallel_state.get_tensor_model_parallel_rank()
    return x.chunk(size, dim=-1)[rank].contiguous()


def _gather_last(x: torch.Tensor) -> torch.Tensor:
    size = _tp_size()
    if size == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x, group=_tp_group())
    return torch.cat(parts, dim=-1)


def _split_first(x: torch.Tensor) -> torch.Tensor:
    size = _tp_size()
    if size == 1:
        return x
    if x.size(0) % size != 0:
        raise ValueError(f"sequence length {x.size(0)} is not divisible by the tensor-parallel size {size} "
                         "(needed by --sequence-parallel)")
    rank = parallel_state.get_tensor_model_parallel_rank()
    return x.chunk(size, dim=0)[rank].contiguous()


def _gather_first(x: torch.Tensor) -> torch.Tensor:
    size = _tp_size()
    if size == 1:
        return x
    x = x.contiguous()
    out = torch.empty((x.size(0) * size,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    dist.all_gather_into_tensor(out, x, group=_tp_group())
    return out


def _reduce_scatter_first(x: torch.Tensor) -> torch.Tensor:
    size = _tp_size()
    if size == 1:
        return x
    if x.size(0) % size != 0:
        raise ValueError(f"sequence length {x.size(0)} is not divisible by the tensor-parallel size {size} "
                         "(needed by --sequence-parallel)")
    x = x.contiguous()
    out = torch.empty((x.size(0) // size,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    dist.reduce_scatter_tensor(out, x, group=_tp_group())
    return out


class _CopyToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad)


class _ReduceFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return _all_reduce(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _ScatterToRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return _split_last(x)

    @staticmethod
    def backward(ctx, grad):
        return _gather_last(grad)


class _GatherFromRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return _gather_last(x)

    @staticmethod
    def backward(ctx, grad):
        return _split_last(grad)


class _ScatterToSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return _split_first(x)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad)


class _GatherFromSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, tensor_parallel_output_grad):
        ctx.tensor_parallel_output_grad = tensor_parallel_output_grad
        return _gather_first(x)

    @staticmethod
    def backward(ctx, grad):
        # When the consumer is tensor-parallel (a column-parallel linear), every rank holds a partial
        # gradient of the full sequence: sum them and keep this rank's slice. Otherwise the gradient
        # is already complete on every rank and only needs slicing.
        if ctx.tensor_parallel_output_grad:
            return _reduce_scatter_first(grad), None
        return _split_first(grad), None


class _ReduceScatterToSequenceRegion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return _reduce_scatter_first(x)

    @staticmethod
    def backward(ctx, grad):
        return _gather_first(grad)


def copy_to_tensor_model_parallel_region(x):
    """Identity forward; all-reduce of the gradient (input of a column-parallel layer)."""
    return _CopyToRegion.apply(x)


def reduce_from_tensor_model_parallel_region(x):
    """All-reduce forward (output of a row-parallel layer); identity backward."""
    return _ReduceFromRegion.apply(x)


def scatter_to_tensor_model_parallel_region(x):
    """Keep this rank's slice of the last dimension; all-gather of the gradient."""
    return _ScatterToRegion.apply(x)


def gather_from_tensor_model_parallel_region(x):
    """All-gather along the last dimension; slice of the gradient."""
    return _GatherFromRegion.apply(x)


def scatter_to_sequence_parallel_region(x):
    """Keep this rank's slice of the sequence (first) dimension."""
    return _ScatterToSequenceRegion.apply(x)


def gather_from_sequence_parallel_region(x, tensor_parallel_output_grad: bool = True):
    """All-gather along the sequence dimension."""
    return _GatherFromSequenceRegion.apply(x, tensor_parallel_output_grad)


def reduce_scatter_to_sequence_parallel_region(x):
    """Sum over tensor-parallel ranks and keep this rank's slice of the sequence."""
    return _ReduceScatterToSequenceRegion.apply(x)


def all_gather_last_dim_from_tensor_parallel_region(x):
    """Forward-only gather (no autograd), e.g. for logits at generation time."""
    return _gather_last(x)
