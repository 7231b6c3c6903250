"""Validation and test loops: the loss over --eval-iters global batches, printed with perplexity."""
import time
from typing import Dict, Optional

import torch

from megatron.core import parallel_state
from megatron.core.num_microbatches_calculator import get_num_microbatches
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.utils import no_effect
from megatron.training.global_vars import get_args, get_tensorboard_writer
from megatron.training.log_line import validation_log_lines
from megatron.training.throughput import format_eta
from megatron.training.loss_reduction import reduce_losses
from megatron.training.train_state import TrainState
from megatron.training.utils import is_last_rank, print_rank_last

PROGRESS_AFTER_S = 10.0


def evaluate(forward_step_func, data_iterator, model, process_non_loss_data_func, config, verbose=False,
             non_loss_data_func=None, eval_iters=None, train_state: Optional[TrainState] = None,
             description: str = "validation"):
    """Mean losses over ``eval_iters`` (default --eval-iters) global batches, token-weighted where the
    loss reports [sum, count]; with ``process_non_loss_data_func``, also the data it is to process
    (Megatron's contract). An iterator with ``restart()`` (--full-validation) starts over first.
    ``verbose`` prints a progress line at the --log-interval batches once the evaluation has run
    for PROGRESS_AFTER_S seconds (a short one stays quiet). Returns (losses, collected non-loss data
    or None)."""
    no_effect("the schedule reads the model's own config", config)
    args = get_args()
    for chunk in model:
        chunk.eval()
    for iterator in (data_iterator if isinstance(data_iterator, list) else [data_iterator]):
        if hasattr(iterator, "restart"):
            iterator.restart()
    sums: Dict[str, float] = {}
    eval_batches = args.eval_iters if eval_iters is None else eval_iters
    start = time.time()
    forward_backward = get_forward_backward_func()
    with torch.no_grad():
        for done in range(1, eval_batches + 1):
            losses_reduced = forward_backward(
                forward_step_func=forward_step_func, data_iterator=data_iterator, model=model,
                num_microbatches=get_num_microbatches(), seq_length=args.seq_length,
                micro_batch_size=args.micro_batch_size, decoder_seq_length=args.decoder_seq_length,
                forward_only=True, hooks=ScheduleHooks())
            if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
                for key, value in reduce_losses(losses_reduced).items():
                    sums[key] = sums.get(key, 0.0) + value
            if train_state is not None:
                train_state.consumed_valid_samples += args.global_batch_size
            elapsed = time.time() - start
            if verbose and elapsed >= PROGRESS_AFTER_S and (done % args.log_interval == 0 or done == eval_batches):
                eta = format_eta(elapsed / done * (eval_batches - done))
                print_rank_last(f"evaluating on the {description} set: batch {done}/{eval_batches} | "
                                f"elapsed {elapsed:.1f} s | ETA {eta}")
        collected = None
        if process_non_loss_data_func is not None and is_last_rank():
            if non_loss_data_func is not None:
                collected = non_loss_data_func(model)
            else:
                collected = forward_backward(
                    forward_step_func=forward_step_func, data_iterator=data_iterator, model=model,
                    num_microbatches=get_num_microbatches(), seq_length=args.seq_length,
                    micro_batch_size=args.micro_batch_size, decoder_seq_length=args.decoder_seq_length,
                    forward_only=True, collect_non_loss_data=True, hooks=ScheduleHooks())
    for chunk in model:
        chunk.train()
    return {key: value / max(eval_batches, 1) for key, value in sums.items()}, collected


def evaluate_and_print_results(prefix, forward_step_func, data_iterator, model, iteration,
                               process_non_loss_data_func, config, verbose=False, non_loss_data_func=None,
                               write_to_tensorboard: bool = True, eval_iters=None,
                               train_state: Optional[TrainState] = None):
    """Evaluate, print Megatron's validation lines, write them to TensorBoard; returns the losses."""
    description = "test" if prefix.endswith("test set") else "validation"
    losses, collected = evaluate(forward_step_func, data_iterator, model, process_non_loss_data_func, config,
                                 verbose, non_loss_data_func, eval_iters, train_state, description)
    for line in validation_log_lines(prefix, losses):
        print_rank_last(line)
    writer = get_tensorboard_writer()
    if writer is not None and write_to_tensorboard:
        consumed = train_state.consumed_train_samples if train_state is not None else 0
        writer.write_validation(iteration, consumed, losses)
    if process_non_loss_data_func is not None and collected is not None and is_last_rank():
        process_non_loss_data_func(collected, iteration, writer)
    return losses
