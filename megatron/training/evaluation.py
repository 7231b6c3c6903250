"""Validation and test loops: the loss over --eval-iters global batches, printed with perplexity."""
from typing import Dict

import torch

from megatron.core.num_microbatches_calculator import get_num_microbatches
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core import parallel_state
from megatron.training.global_vars import get_args, get_tensorboard_writer
from megatron.training.log_line import validation_log_lines
from megatron.training.utils import print_rank_last


def evaluate(forward_step_func, data_iterator, model, process_non_loss_data_func, config, verbose=False,
             non_loss_data_func=None, eval_iters=None) -> Dict[str, float]:
    """Mean losses over ``eval_iters`` (default --eval-iters) global batches, token-weighted where the
    loss reports [sum, count]. An iterator with ``restart()`` (--full-validation) starts over first."""
    from megatron.training.training import reduce_losses
    args = get_args()
    for chunk in model:
        chunk.eval()
    if hasattr(data_iterator, "restart"):
        data_iterator.restart()
    sums: Dict[str, float] = {}
    iters = 0
    eval_batches = args.eval_iters if eval_iters is None else eval_iters
    with torch.no_grad():
        for _ in range(eval_batches):
            losses_reduced = get_forward_backward_func()(
                forward_step_func=forward_step_func, data_iterator=data_iterator, model=model,
                num_microbatches=get_num_microbatches(), seq_length=args.seq_length,
                micro_batch_size=args.micro_batch_size, decoder_seq_length=getattr(args, "decoder_seq_length", None),
                forward_only=True)
            if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
                for key, value in reduce_losses(losses_reduced).items():
                    sums[key] = sums.get(key, 0.0) + value
            args.consumed_valid_samples += args.global_batch_size
            iters += 1
    for chunk in model:
        chunk.train()
    return {key: value / max(iters, 1) for key, value in sums.items()}


def evaluate_and_print_results(prefix, forward_step_func, data_iterator, model, iteration,
                               process_non_loss_data_func, config, verbose=False, non_loss_data_func=None,
                               write_to_tensorboard: bool = True, eval_iters=None):
    losses = evaluate(forward_step_func, data_iterator, model, process_non_loss_data_func, config, verbose,
                      non_loss_data_func, eval_iters)
    for line in validation_log_lines(prefix, losses):
        print_rank_last(line)
    writer = get_tensorboard_writer()
    if writer is not None and write_to_tensorboard:
        writer.write_validation(iteration, get_args().consumed_train_samples, losses)
    return losses
