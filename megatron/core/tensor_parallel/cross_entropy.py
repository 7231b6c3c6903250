"""Cross-entropy over logits split along the vocabulary, without gathering the full vocabulary.

Each rank holds logits for its slice of the (padded) vocabulary. The softmax normaliser and the
target logit are combined with three small all-reduces over [sequence, batch]. Columns at or beyond
``true_vocab_size`` (vocabulary padding) are masked to -inf, so the loss and its gradient do not
depend on how much padding a layout adds.
"""
from typing import Optional

import torch
import torch.distributed as dist

from megatron.core.tensor_parallel.mappings import resolve_tp_group
from megatron.core.tensor_parallel.utils import VocabUtility
from megatron.core.utils import get_pg_rank, get_pg_size, reject_unsupported


def _all_reduce(x, op, group):
    if get_pg_size(group) > 1:
        dist.all_reduce(x, op=op, group=group)
    return x


def mask_padded_vocab(logits: torch.Tensor, true_vocab_size: Optional[int], vocab_start: int) -> torch.Tensor:
    """Set logits of padding columns (global index >= true_vocab_size) to -inf."""
    if true_vocab_size is None or vocab_start + logits.size(-1) <= true_vocab_size:
        return logits
    first_padded = max(true_vocab_size - vocab_start, 0)
    logits = logits.clone()
    logits[..., first_padded:] = float("-inf")
    return logits


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, true_vocab_size, group):
        rank, size = get_pg_rank(group), get_pg_size(group)
        start, end = VocabUtility.vocab_range_from_per_partition_vocab_size(logits.size(-1), rank, size)
        logits = mask_padded_vocab(logits, true_vocab_size, start)

        logits_max = _all_reduce(logits.max(dim=-1).values, dist.ReduceOp.MAX, group)
        logits = logits - logits_max.unsqueeze(-1)

        outside = (target < start) | (target >= end)
        local_target = (target - start).masked_fill(outside, 0)
        predicted = logits.gather(-1, local_target.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0)
        predicted = _all_reduce(predicted, dist.ReduceOp.SUM, group)

        exp_logits = logits.exp()
        sum_exp = _all_reduce(exp_logits.sum(dim=-1), dist.ReduceOp.SUM, group)
        loss = torch.log(sum_exp) - predicted

        softmax = exp_logits.div_(sum_exp.unsqueeze(-1))
        ctx.save_for_backward(softmax, outside, local_target)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        softmax, outside, local_target = ctx.saved_tensors
        grad = softmax
        owned = (~outside).to(grad.dtype)
        grad.scatter_add_(-1, local_target.unsqueeze(-1), -owned.unsqueeze(-1))
        grad.mul_(grad_output.unsqueeze(-1))
        return grad, None, None, None


def vocab_parallel_cross_entropy(vocab_parallel_logits: torch.Tensor, target: torch.Tensor,
                                 label_smoothing: float = 0.0,
                                 true_vocab_size: Optional[int] = None, tp_group=None) -> torch.Tensor:
    """Per-token loss [...] for logits [..., vocab/tp] and integer targets [...].

    ``true_vocab_size`` and ``tp_group`` are ours: the real vocabulary size (padding columns are
    masked) and the tensor-parallel group the vocabulary is split over (default: the global one).
    """
    reject_unsupported("vocab_parallel_cross_entropy", {"label_smoothing": 0.0}, label_smoothing=float(label_smoothing))
    return _VocabParallelCrossEntropy.apply(vocab_parallel_logits, target, true_vocab_size,
                                            resolve_tp_group(tp_group))
