"""Run a test function on N real ranks (gloo on CPU, NCCL on GPUs).

Processes are spawned once per call: put a group of related checks in one function and loop over
layouts inside it, since each process start costs seconds. The function must live at module level
of an importable module (a test file under tests/), take ``(rank, world_size, *args)`` and may
return a picklable value; the call returns the list of per-rank values.
"""
import os
import pickle
import socket
import tempfile
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, fn, world_size, port, backend, out_dir, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    # N ranks share a small machine; and one thread makes every rank's numbers independent of the host's
    # core count (a reduction's order follows the thread count), so the golden losses hold everywhere.
    torch.set_num_threads(1)
    if backend == "nccl":
        os.environ.pop("MEGATRON_DEVICE", None)  # tests/conftest.py defaults it to cpu
        torch.cuda.set_device(rank)
    else:
        os.environ["MEGATRON_DEVICE"] = "cpu"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        with open(os.path.join(out_dir, f"{rank}.pkl"), "wb") as f:
            pickle.dump(result, f)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        from megatron.core import parallel_state
        parallel_state.destroy_model_parallel()
        dist.destroy_process_group()


def run_distributed(fn, world_size: int, *args, backend: str = "gloo"):
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` spawned ranks; return their results."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_entry, args=(fn, world_size, free_port(), backend, out_dir, args),
                           nprocs=world_size, join=True, start_method="spawn")
        results = []
        for rank in range(world_size):
            with open(os.path.join(out_dir, f"{rank}.pkl"), "rb") as f:
                results.append(pickle.load(f))
        return results
