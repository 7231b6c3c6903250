"""After the last micro-batch's backward: reduce gradients across the ranks that hold partial sums
(data parallel, tensor-parallel partial sums, the tied embedding between first and last pipeline
stage) and normalise per-token losses by the global token count.

Which gradients are partial over tensor parallelism is read from each parameter's ParamLayout
(``grad_partial_over_tp``); the groups come from ``pg_collection`` (default: the model chunk's own,
then the global layout's).
"""
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

from megatron.core.param_layout import ParamLayout, param_layouts
from megatron.core.process_groups_config import ProcessGroupCollection, default_pg_collection
from megatron.core.utils import get_pg_size, no_effect, unwrap_model


def _grad_of(param: torch.nn.Parameter) -> Optional[torch.Tensor]:
    return param.main_grad if hasattr(param, "main_grad") else param.grad


def _layouts_of(chunk: torch.nn.Module) -> Dict[str, ParamLayout]:
    table = getattr(chunk, "param_layouts", None)  # DDP keeps the wrapped module's table
    if isinstance(table, dict):
        return {f"module.{name}": layout for name, layout in table.items()}
    return param_layouts(chunk)


def _chunk_pg_collection(chunk: torch.nn.Module) -> Optional[ProcessGroupCollection]:
    while chunk is not None:
        pg = getattr(chunk, "pg_collection", None)
        if isinstance(pg, ProcessGroupCollection):
            return pg
        chunk = getattr(chunk, "module", None)
    return None


def _allreduce_partial_tp_grads(model: List[torch.nn.Module], pg_collection: ProcessGroupCollection) -> None:
    """Sum over the tensor-parallel group the gradients that each rank only holds in part: norms
    and row-parallel biases under sequence parallelism (each rank saw a slice of the sequence) and
    q/k norms (each rank normalised its own heads)."""
    by_group: Dict[str, List[torch.Tensor]] = {}
    for chunk in model:
        layouts = _layouts_of(chunk)
        for name, param in chunk.named_parameters():
            layout = layouts[name]
            grad = _grad_of(param)
            if layout.grad_partial_over_tp and grad is not None:
                by_group.setdefault(layout.tp_group, []).append(grad)
    for group_name, grads in by_group.items():
        group = pg_collection.group(group_name)
        if get_pg_size(group) == 1:
            continue
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, group=group)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def _allreduce_tied_embedding_grads(model: List[torch.nn.Module], pg_collection: ProcessGroupCollection) -> None:
    """Under pipeline parallelism a tied word embedding lives twice: as the input embedding of the
    first stage and as the output layer of the last. Summing their gradients over the embedding
    group (first + last stage) keeps the two copies equal after every step."""
    group = getattr(pg_collection, "embd", None)
    if group is None or get_pg_size(group) == 1:
        return
    holders = {id(c): c for c in (model[0], model[-1])}.values()
    for chunk in holders:
        inner = unwrap_model(chunk)
        if not getattr(inner, "share_embeddings_and_output_weights", False):
            continue
        if not (getattr(inner, "pre_process", False) or getattr(inner, "post_process", False)):
            continue
        weight = inner.shared_embedding_or_output_weight()
        grad = _grad_of(weight) if weight is not None else None
        if grad is not None:
            dist.all_reduce(grad, group=group)


def _token_count_from_last_stage(num_tokens: torch.Tensor, pg_collection: ProcessGroupCollection) -> torch.Tensor:
    """Only the last pipeline stage computed the loss, so only it counted the loss tokens."""
    total = num_tokens.detach().clone().float()
    pp = getattr(pg_collection, "pp", None)
    if pp is not None and get_pg_size(pp) > 1:
        dist.broadcast(total, src=dist.get_global_rank(pp, get_pg_size(pp) - 1), group=pp)
    return total


def finalize_model_grads(model: List[torch.nn.Module], num_tokens: Optional[torch.Tensor] = None,
                         pg_collection: Optional[ProcessGroupCollection] = None,
                         force_all_reduce: Optional[bool] = False) -> None:
    """Data-parallel reduction, tensor-parallel partial sums, and per-token normalisation.

    ``num_tokens`` (with --calculate-per-token-loss) is this rank's count of loss tokens; the
    gradients, which are sums over tokens, are divided by the count over all data-parallel ranks.
    """
    no_effect("gradients are always all-reduced (there is no reduce-scatter without the distributed "
              "optimizer)", force_all_reduce)
    if not isinstance(model, list):
        model = [model]
    pg = default_pg_collection(pg_collection or _chunk_pg_collection(model[0]))
    for chunk in model:
        chunk.finish_grad_sync()
    _allreduce_partial_tp_grads(model, pg)
    _allreduce_tied_embedding_grads(model, pg)
    if num_tokens is not None:
        total = _token_count_from_last_stage(num_tokens, pg)
        dp_cp = pg.group("dp_cp")
        if get_pg_size(dp_cp) > 1:
            dist.all_reduce(total, group=dp_cp)
        scale = 1.0 / max(float(total), 1.0)
        for chunk in model:
            chunk.scale_gradients(scale)
