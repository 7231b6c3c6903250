"""The periodic training report: Megatron's iteration line plus tokens/s, MFU, memory and ETA,
TensorBoard scalars, and the one-time memory report."""
import math
import time
from datetime import datetime
from typing import Dict, Optional

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.num_microbatches_calculator import get_current_global_batch_size
from megatron.training.global_vars import get_tensorboard_writer, get_timers
from megatron.training.log_line import iteration_log_line
from megatron.training.lr_schedule import learning_rates_for_logging
from megatron.training.throughput import (
    count_params_for_mfu,
    eta_seconds,
    gpu_peak_flops,
    memory_report_line,
    mfu_convention_note,
    model_flops_utilization,
    num_floating_point_operations,
    palm_flops_per_token,
    peak_memory_gib_and_fraction,
    sum_count_over_group,
)
from megatron.training.utils import print_rank_0, print_rank_last


class TrainingReporter:
    """Accumulates losses over a --log-interval and prints/writes one report per interval."""

    def __init__(self, model, args):
        self.args = args
        local = count_params_for_mfu(model, parallel_state.get_tensor_model_parallel_rank())
        group = parallel_state.get_model_parallel_group()
        self.mfu_params = sum_count_over_group(local, group)
        self.flops_per_token = palm_flops_per_token(self.mfu_params, args.num_layers, args.hidden_size,
                                                    args.seq_length)
        name = torch.cuda.get_device_name() if device.on_cuda() else "cpu"
        self.peak_flops = gpu_peak_flops(name, args.params_dtype) if device.on_cuda() else None
        print_rank_0(mfu_convention_note(name, args.params_dtype, self.peak_flops))
        self.totals: Dict[str, float] = {}
        self.advanced = 0
        self.skipped_in_interval = 0
        self.nan_in_interval = 0
        self.memory_reported = False
        self.interval_start = time.time()

    def record(self, loss_dict: Dict[str, float], skipped: bool, nan: bool) -> None:
        """Account one iteration in the averages of the current --log-interval."""
        if nan:
            self.nan_in_interval += 1
        if skipped:
            self.skipped_in_interval += 1
            return
        self.advanced += 1
        for key, value in loss_dict.items():
            self.totals[key] = self.totals.get(key, 0.0) + value

    def write_scalars(self, state, loss_dict: Dict[str, float], optimizer, loss_scale: float,
                      grad_norm: Optional[float], num_zeros: Optional[float], params_norm: Optional[float],
                      timing: Optional[Dict[str, float]] = None) -> None:
        """This iteration's TensorBoard / W&B scalars (the writer applies --tensorboard-log-interval);
        ``timing`` (iteration-time, throughput) exists only at --log-interval iterations."""
        writer = get_tensorboard_writer()
        if writer is None:
            return
        lr, decoupled_lr = learning_rates_for_logging(optimizer.param_groups)
        metrics = dict(loss_dict)
        metrics.update({"learning-rate": lr, "decoupled-learning-rate": decoupled_lr,
                        "batch-size": get_current_global_batch_size(), "loss-scale": loss_scale,
                        "grad-norm": grad_norm, "num-zeros": num_zeros, "params-norm": params_norm,
                        "world-size": self.args.world_size})
        metrics.update(timing or {})
        writer.write_training(state.iteration, state.consumed_train_samples, metrics)

    def report(self, state, optimizer, loss_scale: float, grad_norm: Optional[float],
               num_zeros: Optional[float], params_norm: Optional[float]) -> Dict[str, float]:
        """Print the iteration line for the interval just ended (``state``: the run's TrainState);
        return its timing scalars."""
        args = self.args
        iteration = state.iteration
        now = time.time()
        elapsed = (now - self.interval_start) / args.log_interval
        self.interval_start = now
        batch_size = get_current_global_batch_size()
        world = args.world_size
        tokens_per_s = batch_size * args.seq_length / elapsed if elapsed > 0 else 0.0
        tokens_per_gpu = tokens_per_s / world
        tflops = None
        if args.log_throughput:
            tflops = num_floating_point_operations(args, batch_size) / (elapsed * 1e12 * world)
        mfu = model_flops_utilization(self.flops_per_token, tokens_per_gpu, self.peak_flops)
        peak_gib, peak_fraction = peak_memory_gib_and_fraction()
        losses = {k: v / max(1, self.advanced) for k, v in self.totals.items()}
        lr, decoupled_lr = learning_rates_for_logging(optimizer.param_groups)
        line = iteration_log_line(
            timestamp=datetime.now(), iteration=iteration, train_iters=args.train_iters,
            consumed_samples=state.consumed_train_samples, elapsed_time_per_iteration_ms=elapsed * 1000.0,
            learning_rate=lr, decoupled_learning_rate=decoupled_lr, global_batch_size=batch_size, losses=losses,
            loss_scale=loss_scale, grad_norm=grad_norm, skipped_iterations=self.skipped_in_interval,
            nan_iterations=self.nan_in_interval, throughput_tflops_per_gpu=tflops, num_zeros=num_zeros,
            params_norm=params_norm, tokens_per_second=tokens_per_s, tokens_per_second_per_gpu=tokens_per_gpu,
            mfu=mfu, peak_memory_gib=peak_gib, peak_memory_fraction=peak_fraction,
            eta_seconds=eta_seconds(iteration, args.train_iters, elapsed))
        print_rank_last(line)
        if args.log_timers_to_tensorboard and (args.tensorboard_dir or args.wandb_project):
            # Collective (max over ranks): every rank takes part, only the writer's rank writes.
            get_timers().write(["forward-backward", "optimizer"], get_tensorboard_writer(), iteration,
                               normalizer=args.log_interval)
        get_timers().log(["forward-backward", "optimizer"], normalizer=args.log_interval)
        if not self.memory_reported:
            self.memory_reported = True
            if parallel_state.get_data_parallel_rank() == 0 and parallel_state.get_tensor_model_parallel_rank() == 0:
                rank = dist.get_rank() if dist.is_initialized() else 0
                print(memory_report_line(rank, iteration), flush=True)
        self.totals, self.advanced = {}, 0
        self.skipped_in_interval = self.nan_in_interval = 0
        return {"iteration-time": elapsed, "throughput": tflops}


def calc_params_l2_norm(model) -> float:
    """L2 norm of all parameters, each counted once across tensor- and pipeline-parallel ranks (a
    tied output layer is the embedding's copy; see param_layout.counts_here)."""
    from megatron.core.param_layout import counts_here, param_layouts
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.training.utils import finish_param_sync
    pg = ProcessGroupCollection.use_mpu_process_groups()
    chunks = model if isinstance(model, list) else [model]
    finish_param_sync(chunks)
    total = torch.zeros((), dtype=torch.float32, device=device.current_device())
    for chunk in chunks:
        layouts = param_layouts(chunk)
        for name, param in chunk.named_parameters():
            if counts_here(layouts[name], pg):
                total += param.detach().float().pow(2).sum()
    group = parallel_state.get_model_parallel_group()
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(total, group=group)
    return math.sqrt(float(total))
