"""Helpers of the training driver (Megatron's megatron/training/utils.py names)."""
import sys
from typing import List, Optional

import torch
import torch.distributed as dist

from megatron.core import parallel_state
from megatron.core.utils import get_model_config, unwrap_model  # noqa: F401  (Megatron's import path)


def is_last_rank() -> bool:
    return not dist.is_initialized() or dist.get_rank() == dist.get_world_size() - 1


def is_rank_0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def print_rank_0(message: str) -> None:
    if is_rank_0():
        print(message, flush=True)


def print_rank_last(message: str) -> None:
    if is_last_rank():
        print(message, flush=True)


def warn_rank_0(message: str) -> None:
    if is_rank_0():
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def average_losses_across_data_parallel_group(losses: List[torch.Tensor]) -> torch.Tensor:
    """Megatron's helper for legacy loss functions: mean of each loss over data-parallel ranks."""
    averaged = torch.cat([loss.clone().detach().view(1) for loss in losses])
    if parallel_state.get_data_parallel_world_size() > 1:
        dist.all_reduce(averaged, group=parallel_state.get_data_parallel_group())
        averaged = averaged / parallel_state.get_data_parallel_world_size()
    return averaged


def get_ltor_masks_and_position_ids(data: torch.Tensor, eod_token: Optional[int], reset_position_ids: bool,
                                    reset_attention_mask: bool, eod_mask_loss: bool,
                                    create_attention_mask: bool = True):
    """Left-to-right masks for a batch of token ids [b, s] (Megatron's semantics).

    Returns (attention_mask [b or 1, 1, s, s] bool with True = masked, or None; loss_mask [b, s] float;
    position_ids [b, s]). With reset_* options, positions restart and attention is blocked after
    each end-of-document token.
    """
    b, s = data.shape
    attention_mask = None
    if create_attention_mask:
        causal = torch.tril(torch.ones((s, s), device=data.device, dtype=torch.bool))
        attention_mask = causal.expand(b if reset_attention_mask else 1, 1, s, s).clone()
    loss_mask = torch.ones((b, s), dtype=torch.float, device=data.device)
    if eod_mask_loss and eod_token is not None:
        loss_mask[data == eod_token] = 0.0
    position_ids = torch.arange(s, dtype=torch.long, device=data.device).unsqueeze(0).expand(b, s).clone()
    if (reset_position_ids or reset_attention_mask) and eod_token is not None:
        for i in range(b):
            eod_positions = (data[i] == eod_token).nonzero(as_tuple=True)[0].tolist()
            prev = 0
            for j in eod_positions:
                if reset_attention_mask and attention_mask is not None:
                    attention_mask[i, 0, j + 1:, : j + 1] = False
                if reset_position_ids:
                    position_ids[i, j + 1:] -= j + 1 - prev
                    prev = j + 1
    if attention_mask is not None:
        attention_mask = ~attention_mask
    return attention_mask, loss_mask, position_ids


def report_memory(name: str) -> None:
    if not torch.cuda.is_available():
        return
    mb = 1024 * 1024
    print(f"[Rank {dist.get_rank() if dist.is_initialized() else 0}] {name} memory (MB) | "
          f"allocated: {torch.cuda.memory_allocated() / mb:.1f} | "
          f"max allocated: {torch.cuda.max_memory_allocated() / mb:.1f} | "
          f"reserved: {torch.cuda.memory_reserved() / mb:.1f} | "
          f"max reserved: {torch.cuda.max_memory_reserved() / mb:.1f}", flush=True)



def finish_param_sync(model) -> None:
    """Wait for the distributed optimizer's parameter all-gathers still in flight (under
    --overlap-param-gather they finish during the next forward): before the weights are read whole
    outside a forward (a checkpoint, the parameter norm)."""
    for chunk in model if isinstance(model, list) else [model]:
        wait = getattr(chunk, "finish_param_sync", None)
        if wait is not None:
            wait()
