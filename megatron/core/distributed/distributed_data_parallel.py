"""Data parallelism: gradients accumulate into one contiguous buffer per (dtype, group), then one all-reduce.

Each parameter's ``main_grad`` is a view into a buffer. After autograd has finished a parameter's
gradient for the micro-batch, a hook adds it to ``main_grad`` and frees ``.grad``, so gradient
accumulation over micro-batches happens in the buffer (fp32 under bf16, as Megatron does).

Which group reduces a gradient is its ParamLayout's ``grad_reduce_group`` (a ProcessGroupCollection
field: "dp_cp" for dense parameters, "expt_dp" for experts), so buffers are keyed by
(gradient dtype, group name).
"""
import contextlib
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist

from megatron.core.distributed.distributed_data_parallel_config import DistributedDataParallelConfig
from megatron.core.param_layout import param_layouts
from megatron.core.process_groups_config import default_pg_collection
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import get_pg_size, get_pg_src_rank, no_effect


class _GradBuffer:
    """One flat gradient buffer for the parameters of one gradient dtype reduced over one group."""

    def __init__(self, params: List[torch.nn.Parameter], dtype: torch.dtype, group_name: str, group):
        self.params = params
        self.dtype = dtype
        self.group_name, self.group = group_name, group
        numel = sum(p.numel() for p in params)
        self.grad_data = torch.zeros(numel, dtype=dtype, device=params[0].device)
        offset = 0
        for p in params:
            p.main_grad = self.grad_data[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    def reset(self):
        self.grad_data.zero_()


class DistributedDataParallel(MegatronModule):
    def __init__(self, config, ddp_config: DistributedDataParallelConfig, module: torch.nn.Module,
                 disable_bucketing: bool = False, pg_collection=None):
        super().__init__(config)
        no_effect("one reduction per (dtype, group) buffer: bucketing only changes how it is split",
                  disable_bucketing)
        self.ddp_config = ddp_config
        self.module = module
        self.pg_collection = default_pg_collection(pg_collection)
        self.dp_group = self.pg_collection.group("dp_cp")
        self.dp_size = get_pg_size(self.dp_group)
        # The ParamLayout table of the wrapped module, keyed by its qualified parameter names.
        self.param_layouts = param_layouts(module)
        by_key: Dict[Tuple[torch.dtype, str], List[torch.nn.Parameter]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            grad_dtype = torch.float32 if ddp_config.grad_reduce_in_fp32 else param.dtype
            by_key.setdefault((grad_dtype, self.param_layouts[name].grad_reduce_group), []).append(param)
            param.register_post_accumulate_grad_hook(self._accumulate_into_main_grad)
        self.buffers = [_GradBuffer(params, dtype, name, self.pg_collection.group(name))
                        for (dtype, name), params in by_key.items()]
        # Each rank's gradient is a mean over its own micro-batches: average over data-parallel ranks,
        # unless the loss is a per-token sum (then the optimizer divides by the global token count).
        self.per_token_loss = ddp_config.calculate_per_token_loss or config.calculate_per_token_loss

    @staticmethod
    def _accumulate_into_main_grad(param: torch.nn.Parameter) -> None:
        param.main_grad.add_(param.grad)
        param.grad = None

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients are reduced once, in finish_grad_sync, so there is nothing to suspend."""
        yield

    def start_grad_sync(self, *unused):
        """Megatron's hook to start reductions early; here everything is reduced in finish_grad_sync."""
        no_effect("gradients are reduced once, in finish_grad_sync", unused)

    def finish_grad_sync(self) -> None:
        """Average (or sum, for per-token losses) each gradient buffer over its data-parallel group."""
        for buffer in self.buffers:
            size = get_pg_size(buffer.group)
            if size == 1:
                continue
            if self.per_token_loss:
                dist.all_reduce(buffer.grad_data, group=buffer.group)
            elif self.ddp_config.average_in_collective and dist.get_backend(buffer.group) == "nccl":
                # NCCL averages inside the all-reduce (gloo has no AVG op: it scales first instead).
                dist.all_reduce(buffer.grad_data, op=dist.ReduceOp.AVG, group=buffer.group)
            else:
                buffer.grad_data.mul_(1.0 / size)
                dist.all_reduce(buffer.grad_data, group=buffer.group)

    def scale_gradients(self, scaling_factor: float) -> None:
        for buffer in self.buffers:
            buffer.grad_data.mul_(scaling_factor)

    def zero_grad_buffer(self) -> None:
        for buffer in self.buffers:
            buffer.reset()
        for param in self.module.parameters():
            param.grad = None

    def broadcast_params(self) -> None:
        """Copy data-parallel rank 0's parameters to the other replicas (over each parameter's group)."""
        groups = {buffer.group_name: buffer.group for buffer in self.buffers}
        for name, param in self.module.named_parameters():
            group = groups.get(self.param_layouts[name].grad_reduce_group, self.dp_group)
            if get_pg_size(group) > 1:
                dist.broadcast(param.data, src=get_pg_src_rank(group), group=group)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def state_dict_for_save_checkpoint(self, prefix: str = "", keep_vars: bool = False):
        return self.module.state_dict_for_save_checkpoint(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)
