"""Tensor-parallel layers: column- and row-parallel linear, vocabulary-parallel embedding.

Shapes follow Megatron: activations are [sequence, batch, hidden]; a column-parallel linear holds
rows [rank * out/tp, (rank+1) * out/tp) of the full weight, a row-parallel linear the matching
columns of its input dimension. With sequence parallelism, activations between the layers are split
along the sequence instead, and the layers gather / reduce-scatter them.

Each layer communicates over the ``tp_group`` it is given (Megatron Core's argument); None means
the global layout's tensor-parallel group (the expert one for ``is_expert``).
"""
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from megatron.core import device
from megatron.core.param_layout import ParamLayout, ParamRole, record_param_layout
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    gather_from_sequence_parallel_region,
    gather_from_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
    resolve_tp_group,
    scatter_to_tensor_model_parallel_region,
)
from megatron.core.tensor_parallel.param_init import init_module_now_unless_deferred, init_zeros
from megatron.core.tensor_parallel.utils import VocabUtility, divide
from megatron.core.utils import get_pg_rank, get_pg_size, no_effect, reject_unsupported

_TE_BUFFER = "names a Transformer Engine communication buffer; TE is not used"


def _param(shape, config) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.empty(shape, dtype=config.params_dtype, device=device.current_device()))


def _tp_fields(tp_group, is_expert: bool) -> dict:
    return dict(tp_rank=get_pg_rank(tp_group), tp_size=get_pg_size(tp_group),
                tp_group="expt_tp" if is_expert else "tp", grad_reduce_group="expt_dp" if is_expert else "dp_cp")


def linear_with_grad_accumulation_and_async_allreduce(
        input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], gradient_accumulation_fusion: bool,
        allreduce_dgrad: bool, sequence_parallel: bool, grad_output_buffer: Optional[List[torch.Tensor]] = None,
        wgrad_deferral_limit: Optional[int] = 0, async_grad_allreduce: Optional[bool] = None,
        tp_group=None) -> torch.Tensor:
    """``input @ weight.T + bias`` for a column-parallel weight (Megatron Core's function).

    sequence_parallel: ``input`` is this rank's slice of the sequence: all-gather it first (the
    input gradient is reduce-scattered back). allreduce_dgrad: the input gradient is summed over
    the tensor-parallel group. ``async_grad_allreduce`` is the older name of allreduce_dgrad.
    """
    reject_unsupported("linear_with_grad_accumulation_and_async_allreduce", {"wgrad_deferral_limit": 0},
                       grad_output_buffer=grad_output_buffer, wgrad_deferral_limit=wgrad_deferral_limit or 0)
    no_effect("a fused kernel that adds the weight gradient into main_grad; DDP's hook does the same",
              gradient_accumulation_fusion)
    if async_grad_allreduce is not None:
        allreduce_dgrad = async_grad_allreduce
    if sequence_parallel:
        total_input = gather_from_sequence_parallel_region(input, tensor_parallel_output_grad=True, group=tp_group)
    elif allreduce_dgrad:
        total_input = copy_to_tensor_model_parallel_region(input, group=tp_group)
    else:
        total_input = input
    return F.linear(total_input, weight, bias)


class ColumnParallelLinear(torch.nn.Module):
    """Y = X A^T + b with A split along its output dimension across tensor-parallel ranks.

    ``stride`` > 1 means the output is that many logical pieces (e.g. SwiGLU's gate and up
    projections), each split across ranks separately, as in Megatron's checkpoints.
    ``true_output_size`` (ours): how many output rows are real when ``output_size`` is padded
    (the vocabulary); the rest are zeros. Returns ``(output, bias)``; ``bias`` is None unless
    ``skip_bias_add``.
    """

    def __init__(self, input_size: int, output_size: int, *, config, init_method: Callable,
                 bias: bool = True, gather_output: bool = False, stride: int = 1,
                 keep_master_weight_for_test: bool = False, skip_bias_add: bool = False,
                 skip_weight_param_allocation: bool = False, embedding_activation_buffer=None,
                 grad_output_buffer=None, is_expert: bool = False, tp_comm_buffer_name: str = None,
                 disable_grad_reduce: bool = False, tp_group=None, true_output_size: Optional[int] = None):
        super().__init__()
        reject_unsupported("ColumnParallelLinear", {"keep_master_weight_for_test": False},
                           keep_master_weight_for_test=keep_master_weight_for_test,
                           embedding_activation_buffer=embedding_activation_buffer,
                           grad_output_buffer=grad_output_buffer)
        no_effect(_TE_BUFFER, tp_comm_buffer_name)
        self.config = config
        self.input_size, self.output_size = input_size, output_size
        self.gather_output, self.skip_bias_add, self.is_expert = gather_output, skip_bias_add, is_expert
        self.sequence_parallel = config.sequence_parallel and not is_expert
        self.disable_grad_reduce = disable_grad_reduce
        self.tp_group = resolve_tp_group(tp_group, is_expert)
        tp = _tp_fields(self.tp_group, is_expert)
        self.output_size_per_partition = divide(output_size, tp["tp_size"])
        # The full weight may be shorter than output_size (vocabulary padding): rows beyond it are zeros.
        full_out = true_output_size if true_output_size is not None else output_size
        padded = output_size if full_out != output_size else None
        if skip_weight_param_allocation:
            self.weight = None
        else:
            self.weight = _param((self.output_size_per_partition, input_size), config)
            record_param_layout(self, "weight", ParamLayout(
                full_shape=(full_out, input_size), partition_dim=0, chunks=stride, padded_size=padded,
                init_method=init_method, **tp))
        if bias:
            self.bias = _param((self.output_size_per_partition,), config)
            record_param_layout(self, "bias", ParamLayout(
                full_shape=(full_out,), partition_dim=0, chunks=stride, padded_size=padded, role=ParamRole.BIAS,
                init_method=init_zeros, **tp))
        else:
            self.register_parameter("bias", None)
        init_module_now_unless_deferred(self, config.perform_initialization)

    def forward(self, input_: torch.Tensor, weight: Optional[torch.Tensor] = None,
                runtime_gather_output: Optional[bool] = None):
        if weight is None:
            if self.weight is None:
                raise RuntimeError("ColumnParallelLinear was built with skip_weight_param_allocation=True: "
                                   "pass the weight to forward()")
            weight = self.weight
        bias = self.bias if not self.skip_bias_add else None
        output = linear_with_grad_accumulation_and_async_allreduce(
            input_, weight, bias, gradient_accumulation_fusion=self.config.gradient_accumulation_fusion,
            allreduce_dgrad=not (self.disable_grad_reduce or self.is_expert),
            sequence_parallel=self.sequence_parallel, tp_group=self.tp_group)
        gather = self.gather_output if runtime_gather_output is None else runtime_gather_output
        if gather:
            output = gather_from_tensor_model_parallel_region(output, group=self.tp_group)
        return output, (self.bias if self.skip_bias_add else None)


class RowParallelLinear(torch.nn.Module):
    """Y = X A^T + b with A split along its input dimension across tensor-parallel ranks.

    The partial products are summed over ranks (all-reduce, or reduce-scatter along the sequence
    under sequence parallelism); the bias is added once, after the sum.
    """

    def __init__(self, input_size: int, output_size: int, *, config, init_method: Callable,
                 bias: bool, input_is_parallel: bool, skip_bias_add: bool, stride: int = 1,
                 keep_master_weight_for_test: bool = False, is_expert: bool = False,
                 tp_comm_buffer_name: str = None, tp_group=None):
        super().__init__()
        reject_unsupported("RowParallelLinear", {"keep_master_weight_for_test": False},
                           keep_master_weight_for_test=keep_master_weight_for_test)
        no_effect(_TE_BUFFER, tp_comm_buffer_name)
        self.config = config
        self.input_size, self.output_size = input_size, output_size
        self.input_is_parallel, self.skip_bias_add, self.is_expert = input_is_parallel, skip_bias_add, is_expert
        self.sequence_parallel = config.sequence_parallel and not is_expert
        if self.sequence_parallel and not input_is_parallel:
            raise ValueError("RowParallelLinear with sequence parallelism needs input_is_parallel=True")
        self.tp_group = resolve_tp_group(tp_group, is_expert)
        tp = _tp_fields(self.tp_group, is_expert)
        self.input_size_per_partition = divide(input_size, tp["tp_size"])
        self.weight = _param((output_size, self.input_size_per_partition), config)
        record_param_layout(self, "weight", ParamLayout(
            full_shape=(output_size, input_size), partition_dim=1, chunks=stride, init_method=init_method, **tp))
        if bias:
            self.bias = _param((output_size,), config)
            # Under sequence parallelism each rank adds the bias to its own slice of the sequence,
            # so its gradient is partial and must be summed over the tensor-parallel group.
            record_param_layout(self, "bias", ParamLayout(
                full_shape=(output_size,), role=ParamRole.BIAS, grad_partial_over_tp=self.sequence_parallel,
                init_method=init_zeros, **tp))
        else:
            self.register_parameter("bias", None)
        init_module_now_unless_deferred(self, config.perform_initialization)

    def forward(self, input_: torch.Tensor):
        if not self.input_is_parallel:
            input_ = scatter_to_tensor_model_parallel_region(input_, group=self.tp_group)
        partial = F.linear(input_, self.weight)
        if self.is_expert:
            output = partial
        elif self.sequence_parallel:
            output = reduce_scatter_to_sequence_parallel_region(partial, group=self.tp_group)
        else:
            output = reduce_from_tensor_model_parallel_region(partial, group=self.tp_group)
        if self.skip_bias_add:
            return output, self.bias
        if self.bias is not None:
            output = output + self.bias
        return output, None


class VocabParallelEmbedding(torch.nn.Module):
    """Embedding table split along the vocabulary across tensor-parallel ranks.

    ``num_embeddings`` is the padded vocabulary size; ``true_num_embeddings`` (ours; default: the
    same) is how many rows are real. Padding rows are zero-initialised and never looked up.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, init_method: Callable,
                 reduce_scatter_embeddings: bool = False, config, tp_group=None,
                 true_num_embeddings: Optional[int] = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.reduce_scatter_embeddings = reduce_scatter_embeddings
        self.tp_group = resolve_tp_group(tp_group)
        tp = _tp_fields(self.tp_group, False)
        self.tensor_model_parallel_size = tp["tp_size"]
        self.vocab_start_index, self.vocab_end_index = VocabUtility.vocab_range_from_global_vocab_size(
            num_embeddings, tp["tp_rank"], tp["tp_size"])
        self.num_embeddings_per_partition = self.vocab_end_index - self.vocab_start_index
        true_rows = true_num_embeddings if true_num_embeddings is not None else num_embeddings
        self.weight = _param((self.num_embeddings_per_partition, embedding_dim), config)
        record_param_layout(self, "weight", ParamLayout(
            full_shape=(true_rows, embedding_dim), partition_dim=0,
            padded_size=num_embeddings if true_rows != num_embeddings else None, role=ParamRole.EMBEDDING,
            init_method=init_method, **tp))
        init_module_now_unless_deferred(self, config.perform_initialization)

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        if self.tensor_model_parallel_size > 1:
            outside = (input_ < self.vocab_start_index) | (input_ >= self.vocab_end_index)
            local_ids = (input_ - self.vocab_start_index).masked_fill(outside, 0)
            output = F.embedding(local_ids, self.weight)
            output = output.masked_fill(outside.unsqueeze(-1), 0.0)
        else:
            output = F.embedding(input_, self.weight)
        if self.reduce_scatter_embeddings:
            # [b, s, h] -> [s, b, h], summed over ranks and split along the sequence.
            output = output.transpose(0, 1).contiguous()
            return reduce_scatter_to_sequence_parallel_region(output, group=self.tp_group)
        return reduce_from_tensor_model_parallel_region(output, group=self.tp_group)


def param_is_not_tensor_parallel_duplicate(param: torch.nn.Parameter, tp_group=None) -> bool:
    """True if this rank's copy of ``param`` should count once in a global norm (Megatron's
    attribute-based test; the optimizer reads the ParamLayout table instead)."""
    return getattr(param, "tensor_model_parallel", False) or get_pg_rank(resolve_tp_group(tp_group)) == 0


def set_tensor_model_parallel_attributes(tensor: torch.Tensor, is_parallel: bool, dim: int, stride: int) -> None:
    """Megatron's helper: mark a tensor as split along ``dim`` (is_parallel) or replicated."""
    tensor.tensor_model_parallel = is_parallel
    tensor.partition_dim = dim
    tensor.partition_stride = stride


def copy_tensor_model_parallel_attributes(destination: torch.Tensor, source: torch.Tensor) -> None:
    for attr in ("tensor_model_parallel", "partition_dim", "partition_stride"):
        if hasattr(source, attr):
            setattr(destination, attr, getattr(source, attr))
