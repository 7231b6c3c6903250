"""Data parallelism: gradients accumulate into one contiguous buffer per dtype, then one all-reduce.

Each parameter's ``main_grad`` is a view into the buffer. After autograd has finished a parameter's
gradient for the micro-batch, a hook adds it to ``main_grad`` and frees ``.grad``, so gradient
accumulation over micro-batches happens in the buffer (fp32 under bf16, as Megatron does).
"""
import contextlib
from typing import Dict, List

import torch
import torch.distributed as dist

from megatron.core import parallel_state
from megatron.core.distributed.distributed_data_parallel_config import DistributedDataParallelConfig
from megatron.core.transformer.module import MegatronModule


class _GradBuffer:
    """One flat gradient buffer for the parameters of one gradient dtype."""

    def __init__(self, params: List[torch.nn.Parameter], dtype: torch.dtype):
        self.params = params
        self.dtype = dtype
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
        if ddp_config.use_distributed_optimizer:
            raise NotImplementedError("--use-distributed-optimizer is not supported yet")
        self.ddp_config = ddp_config
        self.module = module
        self.dp_group = parallel_state.get_data_parallel_group(with_context_parallel=True)
        self.dp_size = parallel_state.get_data_parallel_world_size(with_context_parallel=True)
        by_dtype: Dict[torch.dtype, List[torch.nn.Parameter]] = {}
        seen = set()
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            grad_dtype = torch.float32 if ddp_config.grad_reduce_in_fp32 else param.dtype
            by_dtype.setdefault(grad_dtype, []).append(param)
            param.register_post_accumulate_grad_hook(self._accumulate_into_main_grad)
        self.buffers = [_GradBuffer(params, dtype) for dtype, params in by_dtype.items()]
        # Each rank's gradient is a mean over its own micro-batches: average over data-parallel ranks,
        # unless the loss is a per-token sum (then the optimizer divides by the global token count).
        self.average_in_collective = False
        if ddp_config.calculate_per_token_loss or config.calculate_per_token_loss:
            self.gradient_scaling_factor = 1.0
        elif ddp_config.average_in_collective and dist.get_backend(self.dp_group) == "nccl":
            # NCCL averages inside the all-reduce (gloo has no AVG op: it scales first instead).
            self.gradient_scaling_factor = 1.0
            self.average_in_collective = True
        else:
            self.gradient_scaling_factor = 1.0 / self.dp_size

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
        pass

    def finish_grad_sync(self) -> None:
        """Average (or sum, for per-token losses) the gradient buffers over data-parallel ranks."""
        if self.dp_size == 1:
            return
        for buffer in self.buffers:
            if self.gradient_scaling_factor != 1.0:
                buffer.grad_data.mul_(self.gradient_scaling_factor)
            op = dist.ReduceOp.AVG if self.average_in_collective else dist.ReduceOp.SUM
            dist.all_reduce(buffer.grad_data, op=op, group=self.dp_group)

    def scale_gradients(self, scaling_factor: float) -> None:
        for buffer in self.buffers:
            buffer.grad_data.mul_(scaling_factor)

    def zero_grad_buffer(self) -> None:
        for buffer in self.buffers:
            buffer.reset()
        for param in self.module.parameters():
            param.grad = None

    def broadcast_params(self) -> None:
        """Copy data-parallel rank 0's parameters to the other replicas."""
        src = parallel_state.get_data_parallel_src_rank(with_context_parallel=True)
        for param in self.module.parameters():
            dist.broadcast(param.data, src=src, group=self.dp_group)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def state_dict_for_save_checkpoint(self, prefix: str = "", keep_vars: bool = False):
        return self.module.state_dict_for_save_checkpoint(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)
