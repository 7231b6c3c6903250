"""Data parallelism: gradients accumulate into bucketed buffers (param_and_grad_buffer.py), one
buffer per (gradient dtype, reduce group); each bucket is all-reduced on its own.

Each parameter's ``main_grad`` is a view into a buffer. After autograd has finished a parameter's
gradient for the micro-batch, a hook adds it to ``main_grad`` and frees ``.grad``, so gradient
accumulation over micro-batches happens in the buffer (fp32 under --accumulate-allreduce-grads-in-fp32).

Which group reduces a gradient is its ParamLayout's ``grad_reduce_group`` (a ProcessGroupCollection
field: "dp_cp" for dense parameters, "expt_dp" for experts).

With ``overlap_grad_reduce``, the hook also marks the parameter ready once its gradient is final for
the step (outside ``no_sync``, i.e. in the last micro-batch), and a bucket whose parameters are all
ready is all-reduced asynchronously while backward goes on; ``finish_grad_sync`` launches what is
left (parameters that got no gradient) and waits. Without it, every bucket is reduced in
``finish_grad_sync``.

With ``use_distributed_optimizer`` the buffers also hold the weights (``param.data`` becomes a view
into them) and a bucket is reduce-scattered: each data-parallel rank gets the reduced gradients of
its own shard, which its DistributedOptimizer steps; the updated shards are then all-gathered into
the weights (``start_param_sync``). With ``overlap_param_gather`` that all-gather runs
asynchronously and a module's forward pre-hook waits for the buckets of its own parameters, so the
next step's forward overlaps the gather of the later layers.
"""
import contextlib
import functools
import weakref
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist

from megatron.core.distributed.distributed_data_parallel_config import DistributedDataParallelConfig
from megatron.core.distributed.param_and_grad_buffer import (ParamAndGradBuffer, default_bucket_size,
                                                             launch_bucket_reduction, launch_param_gather,
                                                             wait_param_gather)
from megatron.core.errors import ConfigError
from megatron.core.param_layout import param_layouts
from megatron.core.process_groups_config import default_pg_collection
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import get_pg_size, get_pg_src_rank, no_effect, unwrap_model


def _grad_ready_hook(ddp_ref, param: torch.nn.Parameter) -> None:
    ddp = ddp_ref()
    if ddp is None:  # the wrapper is gone: nothing accumulates into its buffers any more
        return
    ddp._on_grad_ready(param)


def _wait_buckets(buckets, module, inputs) -> None:
    for bucket in buckets:
        wait_param_gather(bucket)


class DistributedDataParallel(MegatronModule):
    def __init__(self, config, ddp_config: DistributedDataParallelConfig, module: torch.nn.Module,
                 disable_bucketing: bool = False, pg_collection=None):
        super().__init__(config)
        self.ddp_config = ddp_config
        self.module = module
        self.pg_collection = default_pg_collection(pg_collection)
        self.dp_group = self.pg_collection.group("dp_cp")
        self.dp_size = get_pg_size(self.dp_group)
        # The ParamLayout table of the wrapped module, keyed by its qualified parameter names.
        self.param_layouts = param_layouts(module)
        bucket_size = ddp_config.bucket_size
        if bucket_size is None:
            bucket_size = default_bucket_size(self.dp_size)
        if disable_bucketing:  # one bucket per buffer, as Megatron's argument asks
            bucket_size = None
        if ddp_config.overlap_param_gather and not (ddp_config.use_distributed_optimizer
                                                    and ddp_config.overlap_grad_reduce):
            raise ConfigError("overlap_param_gather (--overlap-param-gather) needs use_distributed_optimizer "
                              "(--use-distributed-optimizer) and overlap_grad_reduce (--overlap-grad-reduce)")
        sharded = ddp_config.use_distributed_optimizer
        by_key: Dict[Tuple[torch.dtype, torch.dtype, str], List[torch.nn.Parameter]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            grad_dtype = torch.float32 if ddp_config.grad_reduce_in_fp32 else param.dtype
            key = (param.dtype, grad_dtype, self.param_layouts[name].grad_reduce_group)
            by_key.setdefault(key, []).append(param)
        full_grad = self._params_summed_after_reduction() if sharded else set()
        self.buffers = [ParamAndGradBuffer(params, grad_dtype, name, self.pg_collection.group(name), bucket_size,
                                           with_param_data=sharded, all_reduce_params=full_grad)
                        for (_, grad_dtype, name), params in by_key.items()]
        self._buffer_of = {id(p): buffer for buffer in self.buffers for bucket in buffer.buckets
                           for p in bucket.params}
        self._names = {id(p): name for name, p in module.named_parameters()}
        # The hooks reach this wrapper through a weak reference: a bound method would make a cycle
        # parameter -> hook -> wrapper -> module -> parameter, which is only collected at interpreter
        # exit, and tearing tensors down there can abort the process.
        hook = functools.partial(_grad_ready_hook, weakref.ref(self))
        for buffer in self.buffers:
            for bucket in buffer.buckets:
                for param in bucket.params:
                    param.register_post_accumulate_grad_hook(hook)
        # Each rank's gradient is a mean over its own micro-batches: average over data-parallel ranks,
        # unless the loss is a per-token sum (then the optimizer divides by the global token count).
        self.per_token_loss = ddp_config.calculate_per_token_loss or config.calculate_per_token_loss
        self.overlap_grad_reduce = ddp_config.overlap_grad_reduce
        self._final_micro_batch = True  # False inside no_sync: more micro-batches will add to the grads
        if ddp_config.overlap_param_gather:
            self._register_param_wait_hooks()

    def _params_summed_after_reduction(self):
        """Ids of parameters whose reduced gradient is summed again over another group (the tied
        embedding between the first and last pipeline stage): their buckets stay all-reduced."""
        embd = getattr(self.pg_collection, "embd", None)
        if embd is None or get_pg_size(embd) == 1:
            return set()
        inner = unwrap_model(self.module)
        if not getattr(inner, "share_embeddings_and_output_weights", False):
            return set()
        weight = inner.shared_embedding_or_output_weight()
        return {id(weight)} if weight is not None else set()

    def _register_param_wait_hooks(self) -> None:
        bucket_of = {id(p): bucket for buffer in self.buffers for bucket in buffer.buckets for p in bucket.params}
        for submodule in self.module.modules():
            buckets = {id(bucket_of[id(p)]): bucket_of[id(p)] for p in submodule.parameters(recurse=False)
                       if id(p) in bucket_of}
            if buckets:
                submodule.register_forward_pre_hook(functools.partial(_wait_buckets, list(buckets.values())))
    def _launch(self, buffer: ParamAndGradBuffer, bucket, async_op: bool = True) -> None:
        launch_bucket_reduction(bucket, buffer.group, self.per_token_loss, self.ddp_config.average_in_collective,
                                async_op)

    def _on_grad_ready(self, param: torch.nn.Parameter) -> None:
        buffer = self._buffer_of[id(param)]
        if self.overlap_grad_reduce and buffer.bucket_of(param).launched:
            raise RuntimeError(
                f"the gradient of {self._names[id(param)]} arrived after its bucket's all-reduce was launched: "
                "with overlap_grad_reduce (--overlap-grad-reduce) every backward of a step but the last must "
                "run inside the model's no_sync(); wrap the earlier micro-batches in it, or turn overlap off")
        param.main_grad.add_(param.grad)
        param.grad = None
        if self.overlap_grad_reduce and self._final_micro_batch:
            buffer.mark_ready(param, self._launch)

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside only accumulate: no reduction starts until the last micro-batch's."""
        self._final_micro_batch = False
        try:
            yield
        finally:
            self._final_micro_batch = True

    def start_grad_sync(self, *unused):
        """Launch (asynchronously) every bucket reduction not started yet; finish_grad_sync waits."""
        no_effect("Megatron passes the chunk's parameters; every bucket not launched yet is launched", unused)
        for buffer in self.buffers:
            buffer.launch_remaining(self._launch)

    def finish_grad_sync(self) -> None:
        """Average (or sum, for per-token losses) every bucket over its group and wait for the result."""
        for buffer in self.buffers:
            buffer.launch_remaining(functools.partial(self._launch, async_op=self.overlap_grad_reduce))
        for buffer in self.buffers:
            for bucket in buffer.buckets:
                if bucket.handle is not None:
                    bucket.handle.wait()
            # The reductions of this step are done: a later backward/finish starts a new round.
            buffer.reset_communication()

    def start_param_sync(self, *unused, force_sync: bool = False) -> None:
        """All-gather the updated parameter shards of every data-parallel rank into the weights
        (distributed optimizer): asynchronously under overlap_param_gather unless ``force_sync``."""
        no_effect("Megatron's argument selects buckets to gather; every bucket is gathered", unused)
        async_op = self.ddp_config.overlap_param_gather and not force_sync
        for buffer in self.buffers:
            for bucket in buffer.buckets:
                launch_param_gather(bucket, buffer.group, async_op=async_op)

    def finish_param_sync(self) -> None:
        """Wait for every parameter all-gather still in flight: the weights are whole afterwards."""
        for buffer in self.buffers:
            for bucket in buffer.buckets:
                wait_param_gather(bucket)

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
