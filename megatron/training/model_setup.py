"""Build the model (wrapped for mixed precision and data parallelism), optimizer and LR schedule."""
import inspect
from typing import Callable, List, Optional

import torch

from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel
from megatron.core.enums import ModelType
from megatron.core.errors import ConfigError
from megatron.core.optimizer import get_megatron_optimizer
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.module import Float16Module
from megatron.core.utils import get_model_config
from megatron.training.config_from_args import ddp_config_from_args, optimizer_config_from_args
from megatron.training.global_vars import get_args, get_timers
from megatron.training.lr_schedule import scheduler_from_args
from megatron.training.train_state import TrainState


def _call_model_provider(model_provider_func: Callable, pre_process: bool, post_process: bool,
                         vp_stage: Optional[int], pg_collection):
    """Megatron's provider contract: pass what its signature takes (pre_process, post_process,
    vp_stage, pg_collection); a provider that cannot take a virtual stage cannot build one."""
    params = inspect.signature(model_provider_func).parameters
    kwargs = {"pre_process": pre_process, "post_process": post_process, "vp_stage": vp_stage,
              "pg_collection": pg_collection}
    if vp_stage is not None and "vp_stage" not in params:
        raise ConfigError("virtual pipeline stages need a model provider that takes vp_stage "
                          "(def model_provider(pre_process, post_process, vp_stage=None): ...)")
    return model_provider_func(**{k: v for k, v in kwargs.items() if k in params})


def get_model(model_provider_func: Callable, model_type: ModelType = ModelType.encoder_or_decoder,
              wrap_with_ddp: bool = True) -> List[torch.nn.Module]:
    """The model chunks of this rank (one per virtual pipeline stage), in fp16/bf16 when asked,
    wrapped for data parallelism. Every chunk is built over the layout's process groups."""
    args = get_args()
    pg_collection = ProcessGroupCollection.use_mpu_process_groups()
    vpp = args.virtual_pipeline_model_parallel_size
    chunks = []
    for vp_stage in range(vpp or 1):
        stage = vp_stage if vpp else None
        chunk = _call_model_provider(
            model_provider_func, parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=stage),
            parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=stage), stage, pg_collection)
        chunk.model_type = model_type
        chunks.append(chunk)
    n_params = sum(p.numel() for chunk in chunks for p in chunk.parameters())
    if parallel_state.get_data_parallel_rank() == 0:
        print(f" > number of parameters on (tensor, pipeline) model parallel rank "
              f"({parallel_state.get_tensor_model_parallel_rank()}, "
              f"{parallel_state.get_pipeline_model_parallel_rank()}): {n_params}", flush=True)
    wrapped = []
    for chunk in chunks:
        config = get_model_config(chunk)
        if args.fp16 or args.bf16:
            chunk = Float16Module(config, chunk)
        if wrap_with_ddp:
            chunk = DistributedDataParallel(config, ddp_config_from_args(args), chunk, pg_collection=pg_collection)
            if args.data_parallel_random_init:
                chunk.broadcast_params()
        wrapped.append(chunk)
    return wrapped


def setup_model_and_optimizer(model_provider_func: Callable, model_type: ModelType = ModelType.encoder_or_decoder,
                              no_wd_decay_cond: Optional[Callable] = None, scale_lr_cond: Optional[Callable] = None,
                              lr_mult: float = 1.0, checkpointing_context=None,
                              train_state: Optional[TrainState] = None):
    """Model, optimizer and scheduler, with --load applied: ``train_state`` (when given) is set to
    where the loaded run was."""
    from megatron.training.checkpointing import load_checkpoint, prepare_save_directory
    args = get_args()
    timers = get_timers()
    model = get_model(model_provider_func, model_type)
    if args.save:
        prepare_save_directory(args, model)
    optimizer = get_megatron_optimizer(optimizer_config_from_args(args), model, no_wd_decay_cond,
                                       scale_lr_cond, lr_mult,
                                       pg_collection=ProcessGroupCollection.use_mpu_process_groups())
    # --skip-train may come without a run length: there is no schedule to follow then.
    has_length = bool(args.train_iters or args.train_samples)
    opt_param_scheduler = scheduler_from_args(optimizer, args) if has_length else None
    if args.load is not None or args.pretrained_checkpoint:
        timers("load-checkpoint", log_level=0).start(barrier=True)
        load_checkpoint(model, optimizer, opt_param_scheduler, checkpointing_context=checkpointing_context,
                        train_state=train_state)
        timers("load-checkpoint").stop(barrier=True)
        timers.log(["load-checkpoint"])
    return model, optimizer, opt_param_scheduler
