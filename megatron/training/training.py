"""The pretrain() driver with Megatron's contract, and the training loop.

Reading order: pretrain() -> setup (model, optimizer, data) -> train() -> train_step() -> the schedule
(megatron/core/pipeline_parallel/schedules.py) -> forward_step of the recipe -> model -> loss_func.
Where the run is lives in a TrainState passed to every step, log line and checkpoint; ``args`` is
read-only.
"""
import contextlib
import functools
import gc
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.distributed import finalize_model_grads
from megatron.core.enums import ModelType
from megatron.core.errors import TrainingStopped
from megatron.core.num_microbatches_calculator import (
    get_current_global_batch_size,
    get_num_microbatches,
    update_num_microbatches,
)
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.utils import get_model_config, no_effect, reject_unsupported
from megatron.training.checkpointing import save_checkpoint
from megatron.training.data_iterators import RunData, build_data_iterators
from megatron.training.evaluation import evaluate_and_print_results
from megatron.training.global_vars import get_args, get_signal_handler, get_tensorboard_writer, get_timers
from megatron.training.initialize import initialize_megatron
from megatron.training.loss_reduction import reduce_losses  # noqa: F401  (Megatron's import path)
from megatron.training.memory_report import print_memory_report
from megatron.training.model_setup import get_model, setup_model_and_optimizer  # noqa: F401
from megatron.training.profiling import Profiler
from megatron.training.progress_log import TrainingReporter, calc_params_l2_norm
from megatron.training.run_checks import (
    check_weight_hash_across_dp_replicas,
    nonfinite_grad_ranks,
    nonfinite_loss_ranks,
)
from megatron.training.throughput import num_floating_point_operations  # noqa: F401  (Megatron's path)
from megatron.training.train_state import TrainState
from megatron.training.utils import print_rank_0, print_rank_last

# When the first run of this process started: module import (start-up then includes imports, as in
# Megatron); later runs in the same process (tests, notebooks) start at their pretrain() call.
_PROCESS_START = time.time()
_PRETRAIN_CALLS = 0
_CURRENT_JOB = None


@dataclass
class Job:
    """This job (one launch), as opposed to the run it continues: for exits and --log-progress."""

    start_time: float
    start_flops: float = 0.0  # FLOPs done by earlier jobs (from the checkpoint)


def current_job() -> Optional[Job]:
    """The job train() is running in this process (None outside train())."""
    return _CURRENT_JOB


def train_step(forward_step_func: Callable, data_iterator, model: List[torch.nn.Module], optimizer,
               opt_param_scheduler, config, state: Optional[TrainState] = None
               ) -> Tuple[Dict[str, float], bool, Optional[float], Optional[float]]:
    """One optimizer step over a global batch. Returns (losses, skipped, grad_norm, num_zeros).

    ``state`` is the run's TrainState (read here for messages; train() advances it)."""
    no_effect("the schedule reads the model's own config", config)
    args = get_args()
    timers = get_timers()
    step = (state.iteration if state is not None else 0) + 1
    for chunk in model:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    timers("forward-backward", log_level=1).start(barrier=args.barrier_with_L1_time)
    losses_reduced = get_forward_backward_func()(
        forward_step_func=forward_step_func, data_iterator=data_iterator, model=model,
        num_microbatches=get_num_microbatches(), seq_length=args.seq_length,
        micro_batch_size=args.micro_batch_size, decoder_seq_length=args.decoder_seq_length,
        forward_only=False, hooks=schedule_hooks(model, optimizer))
    timers("forward-backward").stop()
    if args.check_for_nan_in_loss_and_grad:
        bad_ranks = nonfinite_loss_ranks(losses_reduced)
        if bad_ranks:
            raise TrainingStopped(f"the loss is NaN or inf at iteration {step} on rank(s) {bad_ranks}; the run "
                                  "stops before the optimizer step (--no-check-for-nan-in-loss-and-grad lets it "
                                  "go on; the last checkpoint is unchanged)")
    if args.empty_unused_memory_level >= 1 and device.on_cuda():
        torch.cuda.empty_cache()
    timers("optimizer", log_level=1).start(barrier=args.barrier_with_L1_time)
    update_successful, grad_norm, num_zeros = optimizer.step()
    timers("optimizer").stop()
    if not update_successful and grad_norm is not None:
        _on_nonfinite_grad(model, grad_norm, step)
    if update_successful:
        opt_param_scheduler.step(increment=get_current_global_batch_size())
    if args.empty_unused_memory_level >= 2 and device.on_cuda():
        torch.cuda.empty_cache()
    losses = reduce_losses(losses_reduced) if parallel_state.is_pipeline_last_stage(ignore_virtual=True) else {}
    return losses, not update_successful, grad_norm, num_zeros


def _on_nonfinite_grad(model, grad_norm, step: int) -> None:
    """The optimizer refused a step because the gradient norm is NaN/inf (bf16/fp32: no loss scaler
    to absorb it). Stop with the iteration and the ranks named, unless the check is disabled."""
    ranks = nonfinite_grad_ranks(model)
    if get_args().check_for_nan_in_loss_and_grad:
        raise TrainingStopped(f"gradient norm is {grad_norm} at iteration {step}: non-finite gradients on "
                              f"rank(s) {ranks}. The step was not applied; the run stops "
                              "(--no-check-for-nan-in-loss-and-grad skips such steps instead)")
    print_rank_0(f"WARNING: non-finite gradient norm at iteration {step} on rank(s) {ranks}: step skipped")


def _should_exit(iteration: int, job: Job) -> Optional[str]:
    """Why to stop now (after saving), or None."""
    args = get_args()
    handler = get_signal_handler()
    if handler is not None and any(handler.signals_received()):
        return "exit signal received"
    if args.exit_duration_in_mins:
        elapsed = torch.tensor([(time.time() - job.start_time) / 60.0], device=device.current_device())
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if float(elapsed) > args.exit_duration_in_mins:
            return f"--exit-duration-in-mins {args.exit_duration_in_mins} reached"
    if args.exit_interval and iteration % args.exit_interval == 0:
        return f"--exit-interval {args.exit_interval} reached"
    return None


def schedule_hooks(model: List[torch.nn.Module], optimizer) -> ScheduleHooks:
    """What the schedule calls during a training step: the optimizer's loss scaling, the gradient
    finalisation, and the data-parallel wrapper's no_sync (passed, not stored on the model config)."""
    return ScheduleHooks(scale_loss=optimizer.scale_loss, finalize_grads=finalize_model_grads,
                         no_sync=model[0].no_sync if len(model) == 1 else functools.partial(_no_sync_all, model))


@contextlib.contextmanager
def _no_sync_all(model: List[torch.nn.Module]):
    """no_sync of every model chunk at once (the interleaved schedule passes one context)."""
    with contextlib.ExitStack() as stack:
        for chunk in model:
            stack.enter_context(chunk.no_sync())
        yield


def pipeline_schedule_line(args) -> Optional[str]:
    """The schedule and its expected pipeline bubble, printed once at the start (None without PP)."""
    pp = args.pipeline_model_parallel_size
    if pp == 1:
        return None
    from megatron.core.pipeline_parallel.schedules import expected_bubble_fraction
    vpp = args.virtual_pipeline_model_parallel_size
    m = get_num_microbatches()
    kind = f"interleaved 1F1B, {vpp} virtual stages per rank" if vpp else "1F1B"
    return (f"pipeline schedule: {kind} over {pp} stages, {m} micro-batches per step | expected "
            f"bubble: {100 * expected_bubble_fraction(pp, m, vpp):.1f}% of the step "
            f"((p-1)/(v*m+p-1) with p={pp}, v={vpp or 1}, m={m})")


def train(forward_step_func, model, optimizer, opt_param_scheduler, train_data_iterator, valid_data_iterator,
          process_non_loss_data_func=None, config=None, checkpointing_context=None, non_loss_data_func=None,
          train_state: Optional[TrainState] = None, job: Optional[Job] = None, run_data: Optional[RunData] = None):
    """The training loop, from ``train_state`` (default: a fresh run) to --train-iters.
    ``run_data`` (from build_data_iterators) says whether to validate and for how many batches; without
    it, validation runs when ``valid_data_iterator`` is given. Returns (iteration, FLOPs so far)."""
    global _CURRENT_JOB
    args = get_args()
    do_valid = run_data.do_valid if run_data is not None else valid_data_iterator is not None
    valid_iters = run_data.valid_iters if run_data is not None else None
    state = train_state if train_state is not None else TrainState()
    job = _CURRENT_JOB = job or Job(start_time=time.time(), start_flops=state.floating_point_operations_so_far)
    for chunk in model:
        chunk.train()
    config = config or get_model_config(model[0])
    reporter = TrainingReporter(model, args)
    profiler = Profiler(args)
    if args.manual_gc:
        gc.disable()
        gc.collect()
    last_saved = state.iteration
    schedule_line = pipeline_schedule_line(args)
    if schedule_line:
        print_rank_last(schedule_line)
    reporter.interval_start = time.time()
    memory_report_after = state.iteration + 1
    while state.iteration < args.train_iters:
        profiler.step_start(state.iteration)
        update_num_microbatches(state.consumed_train_samples, consistency_check=True)
        losses, skipped, grad_norm, num_zeros = train_step(forward_step_func, train_data_iterator, model,
                                                           optimizer, opt_param_scheduler, config, state)
        batch_size = get_current_global_batch_size()
        nan = any(not math.isfinite(v) for v in losses.values())
        state.iteration += 1
        state.consumed_train_samples += batch_size
        state.floating_point_operations_so_far += num_floating_point_operations(args, batch_size)
        state.skipped_iterations += int(skipped)
        state.nan_iterations += int(nan)
        iteration = state.iteration
        params_norm = calc_params_l2_norm(model) if args.log_params_norm else None
        loss_scale = float(optimizer.get_loss_scale())
        reporter.record(losses, skipped, nan)
        if iteration == memory_report_after:
            print_memory_report(model, optimizer, args)
        timing = None
        if iteration % args.log_interval == 0:
            timing = reporter.report(state, optimizer, loss_scale, grad_norm, num_zeros, params_norm)
        reporter.write_scalars(state, losses, optimizer, loss_scale, grad_norm, num_zeros, params_norm, timing)
        if args.check_weight_hash_across_dp_replicas_interval and \
                iteration % args.check_weight_hash_across_dp_replicas_interval == 0:
            check_weight_hash_across_dp_replicas(model, iteration)
        if args.eval_interval and iteration % args.eval_interval == 0 and do_valid:
            if args.manual_gc and args.manual_gc_eval:
                gc.collect()  # start the evaluation with everything collected
            evaluate_and_print_results(f"iteration {iteration}", forward_step_func, valid_data_iterator, model,
                                       iteration, process_non_loss_data_func, config, False, non_loss_data_func,
                                       eval_iters=valid_iters, train_state=state)
            if args.manual_gc and args.manual_gc_eval:
                gc.collect(generation=0)  # only what the evaluation created
        if args.save and args.save_interval and iteration % args.save_interval == 0:
            _save(state, job, model, optimizer, opt_param_scheduler, checkpointing_context)
            last_saved = iteration
        profiler.step_end(iteration)
        reason = _should_exit(iteration, job)
        if reason:
            if args.save and last_saved != iteration:
                _save(state, job, model, optimizer, opt_param_scheduler, checkpointing_context)
            print_rank_0(f"exiting program at iteration {iteration}: {reason}")
            _finish_writer()
            sys.exit(0)
        if args.manual_gc and args.manual_gc_interval and iteration % args.manual_gc_interval == 0:
            gc.collect()
    profiler.close()
    if args.manual_gc:
        gc.enable()
    _CURRENT_JOB = None
    return state.iteration, state.floating_point_operations_so_far


def _save(state: TrainState, job: Job, model, optimizer, opt_param_scheduler, checkpointing_context=None) -> None:
    """save_checkpoint, then the --log-progress line (all ranks take part in both)."""
    save_checkpoint(state.iteration, model, optimizer, opt_param_scheduler, state.floating_point_operations_so_far,
                    checkpointing_context, train_state=state)
    args = get_args()
    if args.log_progress:
        from megatron.training.progress_file import log_saved_checkpoint
        log_saved_checkpoint(args, state, job.start_time, job.start_flops)


def _finish_writer() -> None:
    writer = get_tensorboard_writer()
    if writer is not None:
        writer.flush()


def pretrain(train_valid_test_dataset_provider, model_provider, model_type=ModelType.encoder_or_decoder,
             forward_step_func=None, process_non_loss_data_func=None, extra_args_provider=None,
             args_defaults=None, get_embedding_ranks=None, get_position_embedding_ranks=None,
             non_loss_data_func=None, store=None, inprocess_call_wrapper=None, argv=None):
    """Megatron's entry point: initialise, build model/optimizer/data, train, evaluate, save."""
    global _PRETRAIN_CALLS
    reject_unsupported("pretrain", inprocess_call_wrapper=inprocess_call_wrapper)
    _PRETRAIN_CALLS += 1
    start = _PROCESS_START if _PRETRAIN_CALLS == 1 else time.time()
    initialize_megatron(extra_args_provider=extra_args_provider, args_defaults=args_defaults or {}, argv=argv,
                        get_embedding_ranks=get_embedding_ranks,
                        get_position_embedding_ranks=get_position_embedding_ranks, store=store)
    args = get_args()
    if args.log_progress:
        from megatron.training.progress_file import append_to_progress_log
        append_to_progress_log(args, "Starting job")
    print_rank_0(f"time to initialize megatron (seconds): {time.time() - start:.3f}")
    state = TrainState()
    model, optimizer, opt_param_scheduler = setup_model_and_optimizer(model_provider, model_type,
                                                                      train_state=state)
    job = Job(start_time=start, start_flops=state.floating_point_operations_so_far)
    config = get_model_config(model[0])
    data = build_data_iterators(train_valid_test_dataset_provider, state)
    print_rank_0("done with setup ...")
    if not args.skip_train and data.do_train:
        print_rank_0("training ...")
        train(forward_step_func, model, optimizer, opt_param_scheduler, data.train, data.valid,
              process_non_loss_data_func, config, None, non_loss_data_func, train_state=state, job=job,
              run_data=data)
        saved_by_interval = args.save_interval and state.iteration % args.save_interval == 0
        if args.save and state.iteration != 0 and not saved_by_interval:
            _save(state, job, model, optimizer, opt_param_scheduler)
    if data.do_valid:
        evaluate_and_print_results(f"iteration {state.iteration} on validation set", forward_step_func, data.valid,
                                   model, state.iteration, process_non_loss_data_func, config, True,
                                   non_loss_data_func, eval_iters=data.valid_iters, train_state=state)
    if data.do_test:
        evaluate_and_print_results(f"iteration {state.iteration} on test set", forward_step_func, data.test, model,
                                   state.iteration, process_non_loss_data_func, config, True, non_loss_data_func)
    _finish_writer()
    return model
