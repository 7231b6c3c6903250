"""The distributed optimizer (ZeRO-1): each data-parallel rank keeps the fp32 master weights and the
optimizer moments of its own shard of the gradient buffers only.

The data-parallel wrapper (DistributedDataParallel with ``use_distributed_optimizer``) holds the
weights and gradients in bucketed buffers, each bucket split into one equal shard per rank. A
parameter's part inside this rank's shard is a :class:`ShardRange`; the optimizer steps one flat
fp32 tensor per range (a view of the weights themselves when they are fp32). One step:
gradients reduce-scattered (DDP's ``finish_grad_sync``), the norm summed over the shards and the
model-parallel ranks, the local update, and the updated shards all-gathered into every rank's
weights (DDP's ``start_param_sync``, asynchronous under ``--overlap-param-gather``).

Adam and SGD update each element on its own, so a sharded step gives the same numbers as the
unsharded one. The checkpoint format is the unsharded optimizer's (gathered on data-parallel rank
0, bucket by bucket, indexed like MixedPrecisionOptimizer's), so a checkpoint loads with or without
the distributed optimizer and at another data-parallel size.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from megatron.core.device import current_device
from megatron.core.distributed.param_and_grad_buffer import all_gather_flat
from megatron.core.optimizer.optimizer import MixedPrecisionOptimizer
from megatron.core.utils import get_pg_rank, get_pg_size


@dataclass
class ShardRange:
    """The part [start, end) of a flattened parameter that lies in this rank's shard of its bucket."""

    name: str  # qualified name in the model chunk
    param: torch.nn.Parameter
    start: int
    end: int
    buffer: object
    bucket: object
    buffer_start: int  # where the range starts in the buffer

    def grad_view(self) -> torch.Tensor:
        return self.buffer.grad_data[self.buffer_start:self.buffer_start + self.end - self.start]

    def param_view(self) -> torch.Tensor:
        return self.buffer.param_data[self.buffer_start:self.buffer_start + self.end - self.start]


def shard_ranges(ddp_chunks) -> List[ShardRange]:
    """This rank's ranges over every buffer of the chunks, in buffer order."""
    ranges = []
    for chunk in ddp_chunks:
        names = {id(p): n for n, p in chunk.module.named_parameters()}
        for buffer in chunk.buffers:
            rank = get_pg_rank(buffer.group)
            for bucket in buffer.buckets:
                lo, hi = bucket.shard_range(rank)
                for param in bucket.params:
                    p_start, p_end, _ = buffer.param_index_map[id(param)]
                    start, end = max(lo, p_start), min(hi, p_end)
                    if start < end:
                        ranges.append(ShardRange(names[id(param)], param, start - p_start, end - p_start,
                                                 buffer, bucket, start))
    return ranges


def local_params_groups(full_param_groups: List[List], ranges: List[ShardRange]) -> List[List]:
    """Per full group, its parameters that have a range on this rank (the torch optimizer's order)."""
    here = {id(r.param) for r in ranges}
    return [[p for p in group if id(p) in here] for group in full_param_groups]


def _state_keys(optimizer: torch.optim.Optimizer) -> Tuple[str, ...]:
    if isinstance(optimizer, torch.optim.AdamW):
        return ("exp_avg", "exp_avg_sq")
    return ("momentum_buffer",)


class DistributedOptimizer(MixedPrecisionOptimizer):
    """MixedPrecisionOptimizer over this rank's shard ranges.

    ``full_param_groups`` are the unsharded groups (model parameters, the checkpoint's indexing);
    the torch ``optimizer`` holds, per group, the main tensors of the ranges of that group's
    parameters found on this rank (a group may be empty here). ``ddp_chunks`` are the wrappers whose
    buffers hold the ranges; ``grad_stats_parallel_group`` should name the data-parallel group and
    the model-parallel one, each shard counting once.
    """

    is_sharded = True

    def __init__(self, optimizer: torch.optim.Optimizer, config, grad_scaler, full_param_groups: List[List],
                 ranges: List[ShardRange], ddp_chunks, data_parallel_group, **kwargs):
        self.ranges = ranges
        self.full_param_groups = full_param_groups
        self.ddp_chunks = ddp_chunks
        self.data_parallel_group = data_parallel_group
        self.range_of = {id(r.param): r for r in ranges}
        super().__init__(optimizer, config, grad_scaler, local_params_groups(full_param_groups, ranges), **kwargs)
        self.has_separate_main_params = any(p.dtype != torch.float32 for group in full_param_groups for p in group)

    @staticmethod
    def main_tensor(shard: ShardRange) -> torch.nn.Parameter:
        """The fp32 tensor the optimizer steps for a range: the weights' own view when they are fp32."""
        view = shard.param_view()
        return torch.nn.Parameter(view if view.dtype == torch.float32 else view.float())

    def _gather_main_grads(self) -> None:
        for model_p, main_p in self.pairs:
            grad = self.range_of[id(model_p)].grad_view()
            main_p.grad = grad if grad.dtype == torch.float32 else grad.float()

    def _copy_main_params_to_model_params(self) -> None:
        for model_p, main_p in self.pairs:
            view = self.range_of[id(model_p)].param_view()
            if view.data_ptr() != main_p.data_ptr():
                view.copy_(main_p.data)
        for chunk in self.ddp_chunks:
            chunk.start_param_sync()

    def reload_model_params(self) -> None:
        with torch.no_grad():
            for model_p, main_p in self.pairs:
                view = self.range_of[id(model_p)].param_view()
                if view.data_ptr() != main_p.data_ptr():
                    main_p.data.copy_(view.float())

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds: moments, and the fp32 masters where separate."""
        total = sum(t.numel() * t.element_size() for s in self.optimizer.state.values()
                    for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
        if self.has_separate_main_params:
            total += sum(m.numel() * m.element_size() for _, m in self.pairs)
        return total

    # ---- checkpoint: the unsharded optimizer's format ---------------------------------------------
    def _local_tensors(self, key: str) -> Dict[int, torch.Tensor]:
        """Per model-parameter id: this rank's flat piece of the master weights ("param") or a moment."""
        out = {}
        for model_p, main_p in self.pairs:
            if key == "param":
                out[id(model_p)] = main_p.detach()
            else:
                value = self.optimizer.state.get(main_p, {}).get(key)
                if value is not None:
                    out[id(model_p)] = value
        return out

    def _gather_full(self, key: str) -> Optional[Dict[int, torch.Tensor]]:
        """The full tensors of ``key`` for every parameter, on data-parallel rank 0 (CPU); collective."""
        local = self._local_tensors(key)
        root = get_pg_rank(self.data_parallel_group) == 0
        full = {}
        for chunk in self.ddp_chunks:
            for buffer in chunk.buffers:
                rank = get_pg_rank(buffer.group)
                for bucket in buffer.buckets:
                    shard = torch.zeros(bucket.grad_data.numel() // bucket.group_size, dtype=torch.float32,
                                        device=bucket.grad_data.device)
                    lo, _ = bucket.shard_range(rank)
                    for param in bucket.params:
                        shard_range = self.range_of.get(id(param))
                        if shard_range is not None and id(param) in local and shard_range.bucket is bucket:
                            begin = shard_range.buffer_start - lo
                            shard[begin:begin + shard_range.end - shard_range.start] = local[id(param)]
                    if bucket.group_size > 1:
                        whole = torch.empty(bucket.grad_data.numel(), dtype=torch.float32, device=shard.device)
                        all_gather_flat(whole, shard, group=buffer.group)
                    else:
                        whole = shard
                    if root:
                        whole = whole.cpu()
                        for param in bucket.params:
                            p_start, p_end, _ = buffer.param_index_map[id(param)]
                            begin = p_start - bucket.offset
                            full[id(param)] = whole[begin:begin + p_end - p_start].view(param.shape).clone()
        return full if root else None

    def _state_step(self) -> Tuple[bool, torch.Tensor]:
        """(whether the optimizer has state yet, Adam's step count), agreed over the data-parallel
        group: a rank without any range learns them from the others."""
        steps = [float(s["step"]) for s in self.optimizer.state.values() if "step" in s]
        value = torch.tensor([1.0 if self.optimizer.state else 0.0, max(steps, default=0.0)], dtype=torch.float64,
                             device=current_device())
        if get_pg_size(self.data_parallel_group) > 1:
            dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.data_parallel_group)
        return bool(value[0] > 0), torch.tensor(float(value[1]), dtype=torch.float32)

    def state_dict(self) -> Optional[Dict]:
        """Collective over the data-parallel group; the state on rank 0, None on the others."""
        has_state, step = self._state_step()
        with_step = isinstance(self.optimizer, torch.optim.AdamW)
        moments = {key: self._gather_full(key) for key in _state_keys(self.optimizer)} if has_state else {}
        masters = self._gather_full("param") if self.has_separate_main_params else None
        if get_pg_rank(self.data_parallel_group) != 0:
            return None
        local_groups = self.optimizer.state_dict()["param_groups"]
        state, param_groups, index = {}, [], 0
        for group, hyper in zip(self.full_param_groups, local_groups):
            indices = []
            for param in group:
                if has_state:
                    state[index] = {k: full[id(param)] for k, full in moments.items()}
                    if with_step:
                        state[index]["step"] = step.clone()
                indices.append(index)
                index += 1
            param_groups.append({**{k: v for k, v in hyper.items() if k != "params"}, "params": indices})
        out = {"optimizer": {"state": state, "param_groups": param_groups}}
        if self.grad_scaler is not None:
            out["grad_scaler"] = self.grad_scaler.state_dict()
        if masters is not None:
            out["fp32_from_fp16_params"] = [[masters[id(p)] for p in group] for group in self.full_param_groups]
        return out

    def load_state_dict(self, state_dict: Dict) -> None:
        """Take this rank's ranges out of an unsharded optimizer state (any data-parallel size)."""
        saved = state_dict["optimizer"]
        local_state, local_groups, local_index = {}, [], 0
        masters = state_dict.get("fp32_from_fp16_params")
        with torch.no_grad():
            for i, (group, hyper) in enumerate(zip(self.full_param_groups, saved["param_groups"])):
                indices = []
                for j, param in enumerate(group):
                    shard_range = self.range_of.get(id(param))
                    if shard_range is None:
                        continue
                    piece = slice(shard_range.start, shard_range.end)
                    entry = saved["state"].get(hyper["params"][j], saved["state"].get(str(hyper["params"][j])))
                    if entry is not None:
                        local_state[local_index] = {k: (v.reshape(-1)[piece] if torch.is_tensor(v) and v.dim() > 0
                                                        else v) for k, v in entry.items()}
                    if masters is not None and self.has_separate_main_params:
                        main = self.optimizer.param_groups[i]["params"][len(indices)]
                        main.copy_(masters[i][j].reshape(-1)[piece].to(main.device))
                    indices.append(local_index)
                    local_index += 1
                local_groups.append({**{k: v for k, v in hyper.items() if k != "params"}, "params": indices})
        if masters is None:
            self.reload_model_params()
        self.optimizer.load_state_dict({"state": local_state, "param_groups": local_groups})
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
