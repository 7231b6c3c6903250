"""Start-up: arguments, distributed init (NCCL on GPUs, gloo on CPU), process groups, seeds, globals."""
import datetime
import logging
import os
import random
import socket

import numpy as np
import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.errors import ConfigError
from megatron.core.utils import no_effect, reject_unsupported
from megatron.core.num_microbatches_calculator import init_num_microbatches_calculator
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed, set_param_init_seed
from megatron.core.timers import Timers
from megatron.training import global_vars
from megatron.training.arguments.derived import freeze, set_derived
from megatron.training.utils import print_rank_0, warn_rank_0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def choose_device_and_backend(requested_backend: str, explicitly_requested: bool = True):
    """CUDA + NCCL when a GPU is there; CPU + gloo otherwise. Falling back from NCCL warns when the
    user asked for it (it is also Megatron's default, which on a CPU machine needs no warning)."""
    forced_cpu = os.environ.get("MEGATRON_DEVICE") == "cpu"
    if torch.cuda.is_available() and not forced_cpu:
        return "cuda", requested_backend
    if requested_backend == "nccl" and explicitly_requested:
        warn_rank_0("--distributed-backend nccl: no CUDA device is available, falling back to gloo on the CPU")
    return "cpu", "gloo"


def initialize_distributed(args, store=None) -> None:
    """Init torch.distributed from torchrun's environment (or as a single process without it), on
    ``store`` when the caller gives one (a torch.distributed Store every rank can reach)."""
    explicit = "distributed_backend" in args.user_set_options
    device_type, backend = choose_device_and_backend(args.distributed_backend, explicit)
    device.set_device_type(device_type)
    if device_type == "cuda":
        torch.cuda.set_device(args.local_rank % torch.cuda.device_count())
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (args.rank, args.world_size):
            # torch.distributed was started by the caller with other numbers than the environment's.
            set_derived(args, "rank", dist.get_rank())
            set_derived(args, "world_size", dist.get_world_size())
    else:
        timeout = datetime.timedelta(minutes=args.distributed_timeout_minutes)
        if store is not None:
            dist.init_process_group(backend, store=store, rank=args.rank, world_size=args.world_size,
                                    timeout=timeout)
        elif "MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend, rank=args.rank, world_size=args.world_size, timeout=timeout)
        else:  # plain `python pretrain_gpt.py`: a world of one
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                    world_size=1, timeout=timeout)
    if parallel_state.model_parallel_is_initialized():
        return
    order = "tp-cp-ep-pp-dp" if args.use_tp_pp_dp_mapping else "tp-cp-ep-dp-pp"
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=args.virtual_pipeline_model_parallel_size,
        context_parallel_size=args.context_parallel_size,
        expert_model_parallel_size=args.expert_model_parallel_size,
        expert_tensor_parallel_size=args.expert_tensor_parallel_size,
        distributed_timeout_minutes=args.distributed_timeout_minutes,
        order=order)


def set_random_seed(seed: int, data_parallel_random_init: bool = False) -> None:
    """Megatron's seeding: pipeline stages differ (+100 per stage) so their dropout differs;
    parameters are initialised from (seed, parameter name), independent of the layout."""
    init_seed = seed
    seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    if data_parallel_random_init:
        seed += 10 * parallel_state.get_data_parallel_rank()
        init_seed += 10 * parallel_state.get_data_parallel_rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_param_init_seed(init_seed)
    model_parallel_cuda_manual_seed(seed)


# Whether torch's deterministic mode was off before --deterministic-mode turned it on (restored by
# destroy_megatron, so a later run in the same process is not slowed by it).
_DETERMINISM_TO_RESTORE = None


def _set_deterministic(args) -> None:
    global _DETERMINISM_TO_RESTORE
    if args.deterministic_mode:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _DETERMINISM_TO_RESTORE = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)


def _set_logging_level(args) -> None:
    """--logging-level, else $MEGATRON_LOGGING_LEVEL, sets the root logger's level (Megatron's order)."""
    level = args.logging_level
    if level is None and os.environ.get("MEGATRON_LOGGING_LEVEL"):
        try:
            level = int(os.environ["MEGATRON_LOGGING_LEVEL"])
        except ValueError:
            raise ConfigError(f"MEGATRON_LOGGING_LEVEL={os.environ['MEGATRON_LOGGING_LEVEL']!r}: expected a "
                             "number such as 20 (INFO) or 10 (DEBUG)") from None
    if level is not None:
        logging.getLogger().setLevel(level)


def _parse_and_validate(argv, extra_args_provider, args_defaults, ignore_unknown_args=False):
    """Megatron's order: parse, take the model's shape from the checkpoint (--use-checkpoint-args),
    then validate (and honour --print-config)."""
    from megatron.training.arguments import parse_args, print_config_and_exit_if_asked, validate_args
    from megatron.training.checkpointing import load_args_from_checkpoint
    args = parse_args(extra_args_provider=extra_args_provider, ignore_unknown_args=ignore_unknown_args, argv=argv)
    if args.use_checkpoint_args and args.load is not None:
        load_args_from_checkpoint(args)
    validate_args(args, defaults=args_defaults)
    print_config_and_exit_if_asked(args)
    return args


def initialize_megatron(extra_args_provider=None, args_defaults=None, ignore_unknown_args: bool = False,
                        allow_no_cuda: bool = True, skip_mpu_initialization: bool = False,
                        get_embedding_ranks=None, get_position_embedding_ranks=None, parsed_args=None,
                        argv=None, store=None):
    """Parse and validate the flags, start torch.distributed (on ``store`` when given), build the
    process groups, seed, build the tokenizer, timers, writers and the micro-batch calculator.
    Returns args, read-only from here on (megatron/training/arguments/derived.py).

    ``allow_no_cuda`` is accepted for Megatron's callers: the CPU is always allowed here."""
    no_effect("the CPU is always allowed here", allow_no_cuda)
    reject_unsupported("initialize_megatron", {"skip_mpu_initialization": False},
                       skip_mpu_initialization=skip_mpu_initialization, get_embedding_ranks=get_embedding_ranks,
                       get_position_embedding_ranks=get_position_embedding_ranks)
    args = parsed_args if parsed_args is not None else _parse_and_validate(argv, extra_args_provider, args_defaults,
                                                                           ignore_unknown_args)
    global_vars.set_args(args)
    _set_logging_level(args)
    initialize_distributed(args, store)
    for note in args.startup_notes:
        print_rank_0(f"note: {note}")
    _set_deterministic(args)
    set_random_seed(args.seed, args.data_parallel_random_init)
    init_num_microbatches_calculator(args.rank, args.rampup_batch_size, args.global_batch_size,
                                     args.micro_batch_size, args.data_parallel_size,
                                     args.decrease_batch_size_if_needed)
    from megatron.training.tokenizer import build_tokenizer
    global_vars.set_tokenizer(build_tokenizer(args))
    global_vars.set_timers(Timers(args.timing_log_level, args.timing_log_option))
    from megatron.training.writers import build_writers
    global_vars.set_tensorboard_writer(build_writers(args))
    if args.exit_signal_handler:
        from megatron.training.signal_handler import DistributedSignalHandler
        global_vars.set_signal_handler(DistributedSignalHandler().__enter__())
    return freeze(args)


def destroy_megatron() -> None:
    """Forget the global training state, keeping torch.distributed up (several runs in one process)."""
    from megatron.core.num_microbatches_calculator import destroy_num_microbatches_calculator
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
    global _DETERMINISM_TO_RESTORE
    writer = global_vars.get_tensorboard_writer()
    if writer is not None:
        writer.close()
    handler = global_vars.get_signal_handler()
    if handler is not None:
        handler.__exit__(None, None, None)  # give SIGTERM its previous handler back
    if _DETERMINISM_TO_RESTORE is not None:
        torch.use_deterministic_algorithms(_DETERMINISM_TO_RESTORE)
        _DETERMINISM_TO_RESTORE = None
    global_vars.destroy_global_vars()
    destroy_num_microbatches_calculator()
    parallel_state.destroy_model_parallel()
    set_param_init_seed(None)
    get_cuda_rng_tracker().reset()
