"""The pretrain() driver with Megatron's contract, and the train / evaluation loops."""
import gc
import math
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.distributed import finalize_model_grads
from megatron.core.enums import ModelType
from megatron.core.num_microbatches_calculator import get_num_microbatches, update_num_microbatches
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.utils import get_model_config
from megatron.training.checkpointing import save_checkpoint
from megatron.training.data_iterators import build_train_valid_test_data_iterators
from megatron.training.evaluation import evaluate_and_print_results
from megatron.training.global_vars import get_args, get_signal_handler, get_tensorboard_writer, get_timers
from megatron.training.initialize import initialize_megatron
from megatron.training.model_setup import setup_model_and_optimizer
from megatron.training.profiling import Profiler
from megatron.training.progress_log import TrainingReporter, calc_params_l2_norm
from megatron.training.run_checks import (
    check_weight_hash_across_dp_replicas,
    nonfinite_grad_ranks,
    nonfinite_loss_ranks,
)
from megatron.training.utils import print_rank_0

# When the run started: module import for a process's first run (start-up then includes imports, as
# in Megatron), pretrain()'s own start for later runs in the same process (tests, notebooks).
_START_TIME = time.time()
_PRETRAIN_CALLS = 0
_JOB_START_FLOPS = 0.0  # FLOPs done before this job (loaded from the checkpoint), for --log-progress


def reduce_losses(losses_reduced: List[Dict[str, torch.Tensor]]) -> Dict[str, float]:
    """Loss dicts of the micro-batches -> one value per key for the global batch (Megatron's rule):
    [sum, count] pairs are summed over micro-batches and data-parallel ranks, then divided;
    single values are averaged over micro-batches (each rank already averaged over DP)."""
    out = {}
    if not losses_reduced:
        return out
    for key in losses_reduced[0]:
        vals = [torch.as_tensor(x[key]).reshape(-1).float() for x in losses_reduced]
        if vals[0].numel() == 2:
            total = torch.stack(vals).sum(dim=0).to(device.current_device())
            group = parallel_state.get_data_parallel_group(with_context_parallel=True)
            if parallel_state.get_data_parallel_world_size(with_context_parallel=True) > 1:
                dist.all_reduce(total, group=group)
            out[key] = float(total[0] / total[1].clamp(min=1))
        else:
            out[key] = float(torch.cat(vals).mean())
    return out


def train_step(forward_step_func: Callable, data_iterator, model: List[torch.nn.Module], optimizer,
               opt_param_scheduler, config) -> Tuple[Dict[str, float], bool, Optional[float], Optional[float]]:
    """One optimizer step over a global batch. Returns (losses, skipped, grad_norm, num_zeros)."""
    args = get_args()
    timers = get_timers()
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    timers("forward-backward", log_level=1).start(barrier=args.barrier_with_L1_time)
    losses_reduced = get_forward_backward_func()(
        forward_step_func=forward_step_func, data_iterator=data_iterator, model=model,
        num_microbatches=get_num_microbatches(), seq_length=args.seq_length,
        micro_batch_size=args.micro_batch_size, decoder_seq_length=getattr(args, "decoder_seq_length", None),
        forward_only=False)
    timers("forward-backward").stop()
    if args.check_for_nan_in_loss_and_grad:
        bad_ranks = nonfinite_loss_ranks(losses_reduced)
        if bad_ranks:
            raise RuntimeError(f"the loss is NaN or inf at iteration {args.curr_iteration + 1} on rank(s) "
                               f"{bad_ranks}; the run stops before the optimizer step "
                               "(--no-check-for-nan-in-loss-and-grad lets it go on)")
    if args.empty_unused_memory_level >= 1 and device.on_cuda():
        torch.cuda.empty_cache()
    timers("optimizer", log_level=1).start(barrier=args.barrier_with_L1_time)
    update_successful, grad_norm, num_zeros = optimizer.step()
    timers("optimizer").stop()
    if not update_successful and grad_norm is not None:
        _on_nonfinite_grad(model, grad_norm)
    if update_successful:
        increment = get_num_microbatches() * args.micro_batch_size * args.data_parallel_size
        opt_param_scheduler.step(increment=increment)
    if args.empty_unused_memory_level >= 2 and device.on_cuda():
        torch.cuda.empty_cache()
    losses = reduce_losses(losses_reduced) if parallel_state.is_pipeline_last_stage(ignore_virtual=True) else {}
    return losses, not update_successful, grad_norm, num_zeros


def _on_nonfinite_grad(model, grad_norm) -> None:
    """The optimizer refused a step because the gradient norm is NaN/inf (bf16/fp32: no loss scaler
    to absorb it). Stop with the iteration and the ranks named, unless the check is disabled."""
    args = get_args()
    ranks = nonfinite_grad_ranks(model)
    if args.check_for_nan_in_loss_and_grad:
        raise RuntimeError(f"gradient norm is {grad_norm} at iteration {args.curr_iteration + 1}: non-finite "
                           f"gradients on rank(s) {ranks}. The step was not applied; the run stops "
                           "(--no-check-for-nan-in-loss-and-grad skips such steps instead)")
    print_rank_0(f"WARNING: non-finite gradient norm at iteration {args.curr_iteration + 1} on rank(s) "
                 f"{ranks}: step skipped")


def _should_exit(iteration: int) -> Optional[str]:
    """Why to stop now (after saving), or None."""
    args = get_args()
    handler = get_signal_handler()
    if handler is not None and any(handler.signals_received()):
        return "exit signal received"
    if args.exit_duration_in_mins:
        elapsed = torch.tensor([(time.time() - _START_TIME) / 60.0], device=device.current_device())
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if float(elapsed) > args.exit_duration_in_mins:
            return f"--exit-duration-in-mins {args.exit_duration_in_mins} reached"
    if args.exit_interval and iteration % args.exit_interval == 0:
        return f"--exit-interval {args.exit_interval} reached"
    return None


def prepare_train_config(model: List[torch.nn.Module], optimizer, config=None):
    """Hook the optimizer's loss scaling and the gradient finalisation into the model config
    (what the schedules call); returns the config."""
    config = config or get_model_config(model[0])
    config.grad_scale_func = optimizer.scale_loss
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = model[0].no_sync if len(model) == 1 else None
    return config


def train(forward_step_func, model, optimizer, opt_param_scheduler, train_data_iterator, valid_data_iterator,
          process_non_loss_data_func=None, config=None, checkpointing_context=None, non_loss_data_func=None):
    """The training loop. Returns (iteration, num_floating_point_operations_so_far)."""
    from megatron.training.throughput import num_floating_point_operations
    args = get_args()
    for chunk in model:
        chunk.train()
    config = prepare_train_config(model, optimizer, config)
    iteration = args.iteration
    flops_so_far = args.num_floating_point_operations_so_far
    reporter = TrainingReporter(model, args)
    profiler = Profiler(args)
    if args.manual_gc:
        gc.disable()
        gc.collect()
    last_saved = iteration
    reporter.interval_start = time.time()
    while iteration < args.train_iters:
        profiler.step_start(iteration)
        update_num_microbatches(args.consumed_train_samples, consistency_check=True)
        args.curr_iteration = iteration
        losses, skipped, grad_norm, num_zeros = train_step(forward_step_func, train_data_iterator, model,
                                                           optimizer, opt_param_scheduler, config)
        iteration += 1
        args.iteration = iteration
        batch_size = parallel_state.get_data_parallel_world_size() * args.micro_batch_size * get_num_microbatches()
        args.consumed_train_samples += batch_size
        flops_so_far += num_floating_point_operations(args, batch_size)
        args.num_floating_point_operations_so_far = flops_so_far
        nan = any(not math.isfinite(v) for v in losses.values())
        params_norm = calc_params_l2_norm(model) if args.log_params_norm else None
        loss_scale = float(optimizer.get_loss_scale())
        reporter.record(losses, skipped, nan)
        timing = None
        if iteration % args.log_interval == 0:
            timing = reporter.report(iteration, optimizer, loss_scale, grad_norm, num_zeros, params_norm)
        reporter.write_scalars(iteration, losses, optimizer, loss_scale, grad_norm, num_zeros, params_norm, timing)
        if args.check_weight_hash_across_dp_replicas_interval and \
                iteration % args.check_weight_hash_across_dp_replicas_interval == 0:
            check_weight_hash_across_dp_replicas(model, iteration)
        if args.eval_interval and iteration % args.eval_interval == 0 and args.do_valid:
            if args.manual_gc and args.manual_gc_eval:
                gc.collect()  # start the evaluation with everything collected
            evaluate_and_print_results(f"iteration {iteration}", forward_step_func, valid_data_iterator, model,
                                       iteration, process_non_loss_data_func, config, False, non_loss_data_func,
                                       eval_iters=getattr(args, "full_validation_iters", None))
            if args.manual_gc and args.manual_gc_eval:
                gc.collect(generation=0)  # only what the evaluation created
        if args.save and args.save_interval and iteration % args.save_interval == 0:
            _save(iteration, model, optimizer, opt_param_scheduler, flops_so_far)
            last_saved = iteration
        profiler.step_end(iteration)
        reason = _should_exit(iteration)
        if reason:
            if args.save and last_saved != iteration:
                _save(iteration, model, optimizer, opt_param_scheduler, flops_so_far)
            print_rank_0(f"exiting program at iteration {iteration}: {reason}")
            _finish_writer()
            sys.exit(0)
        if args.manual_gc and args.manual_gc_interval and iteration % args.manual_gc_interval == 0:
            gc.collect()
    profiler.close()
    if args.manual_gc:
        gc.enable()
    return iteration, flops_so_far


def _save(iteration, model, optimizer, opt_param_scheduler, flops_so_far) -> None:
    """save_checkpoint, then the --log-progress line (all ranks take part in both)."""
    save_checkpoint(iteration, model, optimizer, opt_param_scheduler, flops_so_far)
    if get_args().log_progress:
        from megatron.training.progress_file import log_saved_checkpoint
        log_saved_checkpoint(get_args(), iteration, flops_so_far, _START_TIME, _JOB_START_FLOPS)


def _finish_writer() -> None:
    writer = get_tensorboard_writer()
    if writer is not None:
        writer.flush()


def pretrain(train_valid_test_dataset_provider, model_provider, model_type=ModelType.encoder_or_decoder,
             forward_step_func=None, process_non_loss_data_func=None, extra_args_provider=None,
             args_defaults=None, get_embedding_ranks=None, get_position_embedding_ranks=None,
             non_loss_data_func=None, store=None, inprocess_call_wrapper=None, argv=None):
    """Megatron's entry point: initialise, build model/optimizer/data, train, evaluate, save."""
    global _START_TIME, _PRETRAIN_CALLS, _JOB_START_FLOPS
    _PRETRAIN_CALLS += 1
    if _PRETRAIN_CALLS > 1:
        _START_TIME = time.time()
    initialize_megatron(extra_args_provider=extra_args_provider, args_defaults=args_defaults or {}, argv=argv)
    args = get_args()
    if args.log_progress:
        from megatron.training.progress_file import append_to_progress_log
        append_to_progress_log(args, "Starting job")
    print_rank_0(f"time to initialize megatron (seconds): {time.time() - _START_TIME:.3f}")
    model, optimizer, opt_param_scheduler = setup_model_and_optimizer(model_provider, model_type)
    _JOB_START_FLOPS = args.num_floating_point_operations_so_far
    config = get_model_config(model[0])
    train_it, valid_it, test_it = build_train_valid_test_data_iterators(train_valid_test_dataset_provider)
    print_rank_0("done with setup ...")
    iteration = args.iteration
    if not args.skip_train and args.do_train and args.train_iters > 0:
        print_rank_0("training ...")
        iteration, flops = train(forward_step_func, model, optimizer, opt_param_scheduler, train_it, valid_it,
                                 process_non_loss_data_func, config, None, non_loss_data_func)
        if args.save and iteration != 0 and (not args.save_interval or iteration % args.save_interval != 0):
            _save(iteration, model, optimizer, opt_param_scheduler, flops)
    if args.do_valid:
        evaluate_and_print_results(f"iteration {iteration} on validation set", forward_step_func, valid_it, model,
                                   iteration, process_non_loss_data_func, config, True, non_loss_data_func,
                                   eval_iters=getattr(args, "full_validation_iters", None))
    if args.do_test:
        evaluate_and_print_results(f"iteration {iteration} on test set", forward_step_func, test_it, model,
                                   iteration, process_non_loss_data_func, config, True, non_loss_data_func)
    _finish_writer()
    return model
