"""--log-progress: <save>/progress.txt, one tab-separated line per event, kept across restarts.

Megatron's format, so its readers keep working:

    2025-01-31 12:00:00<TAB>Job ID: 123<TAB># GPUs: 8<TAB>Starting job
    2025-01-31 12:30:00<TAB>Job ID: 123<TAB># GPUs: 8<TAB>Saved checkpoint<TAB>Iteration: 100<TAB>
        Job throughput: 95.1 TFLOP/s/GPU<TAB>Cumulative throughput: 93.0 TFLOP/s/GPU<TAB>
        Floating-point operations: 1.23e+18<TAB>Tokens (in billions): 0.41

Job throughput counts this job only; cumulative throughput counts from the first job of the
current run of jobs with the same number of GPUs (a change of world size starts a new run).
"""
import os
import time
from datetime import datetime
from typing import Optional, Tuple

import torch.distributed as dist

PROGRESS_FILENAME = "progress.txt"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _path(args) -> Optional[str]:
    return os.path.join(args.save, PROGRESS_FILENAME) if args.save else None


def append_to_progress_log(args, text: str, barrier: bool = True) -> None:
    """Append one line (rank 0 writes; every rank must call when ``barrier``). No --save: nothing."""
    path = _path(args)
    if path is None:
        return
    if barrier and dist.is_initialized():
        dist.barrier()
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    os.makedirs(args.save, exist_ok=True)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    with open(path, "a") as stream:
        stream.write(f"{datetime.now().strftime(_TIME_FORMAT)}\tJob ID: {job_id}\t# GPUs: {args.world_size}\t{text}\n")


def _field(token: str) -> str:
    return token.split(": ", 1)[1]


def start_of_current_run(path: str, world_size: int) -> Tuple[Optional[datetime], float]:
    """(time of the first 'Starting job' of the latest run of jobs with ``world_size`` GPUs, FLOPs
    done before it), read from the progress file."""
    start, start_flops, last_saved_flops = None, 0.0, 0.0
    with open(path) as stream:
        for line in stream:
            tokens = line.rstrip("\n").split("\t")
            if len(tokens) < 4:
                continue
            if tokens[3] == "Saved checkpoint" and len(tokens) > 7:
                last_saved_flops = float(_field(tokens[7]))
            if int(_field(tokens[2])) != world_size:
                start = None  # another world size: the run of same-size jobs starts over
                continue
            if tokens[3] == "Starting job" and start is None:
                start, start_flops = datetime.strptime(tokens[0], _TIME_FORMAT), last_saved_flops
    return start, start_flops


def log_saved_checkpoint(args, state, job_start_time: float, job_start_flops: float) -> None:
    """The 'Saved checkpoint' line with job and cumulative throughput (every rank calls);
    ``state`` is the run's TrainState."""
    iteration, flops_so_far = state.iteration, state.floating_point_operations_so_far
    path = _path(args)
    if path is None:
        return
    if dist.is_initialized():
        dist.barrier()  # the checkpoint is complete on every rank before it is logged
        if dist.get_rank() != 0:
            return
    gpus = args.world_size
    job_seconds = max(time.time() - job_start_time, 1e-9)
    job_throughput = (flops_so_far - job_start_flops) / (job_seconds * 1e12 * gpus)
    cumulative = job_throughput
    if os.path.isfile(path):
        start, start_flops = start_of_current_run(path, gpus)
        if start is not None:
            seconds = max((datetime.now() - start).total_seconds(), 1e-9)
            cumulative = (flops_so_far - start_flops) / (seconds * 1e12 * gpus)
    tokens = state.consumed_train_samples * args.seq_length
    append_to_progress_log(args, f"Saved checkpoint\tIteration: {iteration}\t"
                                 f"Job throughput: {job_throughput:.1f} TFLOP/s/GPU\t"
                                 f"Cumulative throughput: {cumulative:.1f} TFLOP/s/GPU\t"
                                 f"Floating-point operations: {flops_so_far:.2e}\t"
                                 f"Tokens (in billions): {tokens / 10 ** 9:.2f}", barrier=False)
