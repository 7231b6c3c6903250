"""Build the optimizer: parameter groups (no weight decay on biases and norms, decoupled LR for
embeddings), fp32 main params, Adam(W) or SGD, and the loss scaler for fp16."""
from typing import Callable, Dict, List, Optional, Tuple

import torch

from megatron.core import device
from megatron.core.param_layout import ParamRole, counts_here, param_layouts
from megatron.core.process_groups_config import ProcessGroupCollection, default_pg_collection
from megatron.core.utils import get_pg_size, no_effect, reject_unsupported
from megatron.core.optimizer.grad_scaler import ConstantGradScaler, DynamicGradScaler
from megatron.core.optimizer.optimizer import (
    Float16OptimizerWithFloat16Params,
    FP32Optimizer,
    MegatronOptimizer,
    MixedPrecisionOptimizer,
)
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer, local_params_groups, shard_ranges
from megatron.core.optimizer.optimizer_config import OptimizerConfig
from megatron.core.errors import ConfigError


def _default_no_weight_decay(name: str, param: torch.nn.Parameter) -> bool:
    return name.endswith(".bias") or len(param.shape) == 1


def _named_params_with_layouts(model_chunks: List[torch.nn.Module]):
    """(name, parameter, layout) of every trainable parameter of the chunks, each parameter once."""
    seen = set()
    for chunk in model_chunks:
        layouts = param_layouts(chunk)
        for name, param in chunk.named_parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                yield name, param, layouts[name]


def _get_param_groups(model_chunks: List[torch.nn.Module], config: OptimizerConfig,
                      no_weight_decay_cond: Optional[Callable], scale_lr_cond: Optional[Callable],
                      lr_mult: float, skip_embedding_weight_decay: bool = False) -> List[Dict]:
    """Group parameters by (weight-decay multiplier, LR multiplier, decoupled LR)."""
    groups: Dict[Tuple, List[torch.nn.Parameter]] = {}
    for name, param, layout in _named_params_with_layouts(model_chunks):
        if no_weight_decay_cond is not None:
            no_wd = no_weight_decay_cond(name, param)
        else:
            no_wd = _default_no_weight_decay(name, param) or (
                skip_embedding_weight_decay and layout.role == ParamRole.EMBEDDING)
        scale_lr = scale_lr_cond(name, param) if scale_lr_cond is not None else False
        # The decoupled learning rate (--decoupled-lr) is for the input embedding and output layer.
        decoupled = config.decoupled_lr is not None and layout.role in (ParamRole.EMBEDDING, ParamRole.OUTPUT)
        key = (0.0 if no_wd else 1.0, lr_mult if scale_lr else 1.0, decoupled)
        groups.setdefault(key, []).append(param)
    param_groups = []
    for (wd_mult, group_lr_mult, decoupled), params in groups.items():
        max_lr = config.decoupled_lr if decoupled else config.lr
        min_lr = config.decoupled_min_lr if decoupled and config.decoupled_min_lr is not None else config.min_lr
        param_groups.append({
            "params": params, "wd_mult": wd_mult, "lr_mult": group_lr_mult, "is_decoupled_lr": decoupled,
            "is_expert_parallel": False, "max_lr": max_lr, "min_lr": min_lr,
        })
    return param_groups


def _main_param(param: torch.nn.Parameter) -> torch.nn.Parameter:
    if param.dtype == torch.float32:
        return param
    main = torch.nn.Parameter(param.detach().float())
    for attr in ("tensor_model_parallel", "partition_dim", "partition_stride"):
        if hasattr(param, attr):
            setattr(main, attr, getattr(param, attr))
    return main


def _torch_optimizer(config: OptimizerConfig, param_groups: List[Dict]) -> torch.optim.Optimizer:
    lr = config.lr if config.lr is not None else 0.0
    if config.optimizer == "adam":
        # Megatron's "adam" is Adam with decoupled weight decay (AdamW).
        kwargs = dict(lr=lr, weight_decay=config.weight_decay, betas=(config.adam_beta1, config.adam_beta2),
                      eps=config.adam_eps)
        if device.on_cuda():
            kwargs["fused"] = True
        else:
            kwargs["foreach"] = True
        return torch.optim.AdamW(param_groups, **kwargs)
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, weight_decay=config.weight_decay, momentum=config.sgd_momentum)
    raise ConfigError(f"--optimizer {config.optimizer!r} is not supported yet (supported: adam, sgd)")


def _grad_scaler(config: OptimizerConfig):
    if not config.fp16:
        return None
    if config.loss_scale:
        return ConstantGradScaler(config.loss_scale)
    return DynamicGradScaler(initial_scale=config.initial_loss_scale, min_scale=config.min_loss_scale,
                             growth_factor=2.0, backoff_factor=0.5, growth_interval=config.loss_scale_window,
                             hysteresis=config.hysteresis)


def _chunk_pg_collection(model_chunks: List[torch.nn.Module]) -> Optional[ProcessGroupCollection]:
    from megatron.core.distributed.finalize_model_grads import _chunk_pg_collection as find
    return find(model_chunks[0]) if model_chunks else None


def get_megatron_optimizer(config: OptimizerConfig, model_chunks: List[torch.nn.Module],
                           no_weight_decay_cond: Optional[Callable] = None,
                           scale_lr_cond: Optional[Callable] = None, lr_mult: float = 1.0,
                           use_gloo_process_groups: bool = True,
                           default_skip_embedding_weight_decay: bool = False,
                           pg_collection: Optional[ProcessGroupCollection] = None, config_overrides=None,
                           dump_param_to_param_group_map: Optional[str] = None,
                           **other_kwargs) -> MixedPrecisionOptimizer:
    """Megatron Core's entry point: one optimizer over all model chunks of this rank.

    ``model_chunks`` is a list (one module is accepted too). The grad norm reduces over
    ``pg_collection.mp`` (tensor x pipeline; default: the chunks' own collection, then the global
    layout's), the fp16 overflow flag over mp and dp_cp; each parameter counts once in the norm,
    as its ParamLayout says.
    """
    reject_unsupported("get_megatron_optimizer", config_overrides=config_overrides,
                       dump_param_to_param_group_map=dump_param_to_param_group_map, **other_kwargs)
    no_effect("gloo groups serve the distributed optimizer's checkpoints, which is not supported",
              use_gloo_process_groups)
    if not isinstance(model_chunks, list):
        model_chunks = [model_chunks]
    pg = default_pg_collection(pg_collection or _chunk_pg_collection(model_chunks))
    param_groups = _get_param_groups(model_chunks, config, no_weight_decay_cond, scale_lr_cond, lr_mult,
                                     default_skip_embedding_weight_decay)
    counted = {id(p) for _, p, layout in _named_params_with_layouts(model_chunks) if counts_here(layout, pg)}
    model_params_groups = [group["params"] for group in param_groups]
    mp, dp_cp = pg.group("mp"), pg.group("dp_cp")
    if config.use_distributed_optimizer:
        return _distributed_optimizer(config, model_chunks, param_groups, counted, mp, dp_cp)
    for group in param_groups:
        group["params"] = [_main_param(p) for p in group["params"]]
    optimizer = _torch_optimizer(config, param_groups)
    return MixedPrecisionOptimizer(optimizer, config, _grad_scaler(config), model_params_groups,
                                   grad_stats_parallel_group=mp if get_pg_size(mp) > 1 else None,
                                   params_counted_in_grad_norm=counted, found_inf_groups=[mp, dp_cp])


def _distributed_optimizer(config: OptimizerConfig, model_chunks, param_groups: List[Dict], counted, mp, dp_cp):
    """ZeRO-1 over the chunks' buffers: each group keeps only this rank's ranges of its parameters."""
    from megatron.core.distributed import DistributedDataParallel
    if not all(isinstance(c, DistributedDataParallel) and c.ddp_config.use_distributed_optimizer
               for c in model_chunks):
        raise ConfigError("OptimizerConfig.use_distributed_optimizer needs every model chunk wrapped in "
                          "DistributedDataParallel with DistributedDataParallelConfig(use_distributed_optimizer=True): "
                          "the wrapper's buffers hold the shards")
    ranges = shard_ranges(model_chunks)
    full_param_groups = [group["params"] for group in param_groups]
    range_of = {id(r.param): r for r in ranges}
    for group, params in zip(param_groups, local_params_groups(full_param_groups, ranges)):
        group["params"] = [DistributedOptimizer.main_tensor(range_of[id(p)]) for p in params]
    optimizer = _torch_optimizer(config, param_groups)
    # Each rank holds a shard of every gradient: the norm sums over the shards, then the model ranks.
    groups = [g for g in (dp_cp, mp) if get_pg_size(g) > 1]
    return DistributedOptimizer(optimizer, config, _grad_scaler(config), full_param_groups, ranges, model_chunks,
                                dp_cp, grad_stats_parallel_group=groups or None,
                                params_counted_in_grad_norm=counted, found_inf_groups=[mp, dp_cp])


__all__ = ["OptimizerConfig", "get_megatron_optimizer", "MegatronOptimizer", "MixedPrecisionOptimizer",
           "DistributedOptimizer",
           "FP32Optimizer", "Float16OptimizerWithFloat16Params"]
