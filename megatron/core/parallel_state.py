"""Process groups of the parallel layout, with Megatron Core's function names.

One object, :class:`ParallelLayout`, knows the sizes, this rank's coordinates and its groups; the
module-level ``get_*`` functions are the Megatron-compatible way to read it.

Rank order is Megatron's ``tp-cp-ep-dp-pp``: tensor-parallel ranks are adjacent (fastest
varying), pipeline stages are furthest apart. For the dense part of the model expert parallelism
folds into data parallelism; expert layers use their own order ``tp-ep-dp-pp`` with the expert
tensor-parallel size.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch.distributed as dist


def _rank_grid_groups(world_size: int, sizes: Dict[str, int], order: str, dims: str) -> List[List[int]]:
    """All rank groups that vary over ``dims`` (e.g. 'tp' or 'tp-pp') in the ``order`` layout.

    ``order`` lists dimensions fastest first. Ranks fill a grid in that order; a group is a set of
    ranks that agree on every coordinate not in ``dims``.
    """
    names = order.split("-")
    shape = [sizes[n] for n in names]
    if int(np.prod(shape)) != world_size:
        raise ValueError(f"parallel sizes {sizes} multiply to {int(np.prod(shape))}, not the world size {world_size}")
    grid = np.arange(world_size).reshape(list(reversed(shape)))  # C order: last axis = fastest dim
    axis_of = {n: len(names) - 1 - i for i, n in enumerate(names)}
    wanted = dims.split("-")
    for d in wanted:
        if d not in axis_of:
            raise ValueError(f"unknown parallel dimension {d!r} in {dims!r}")
    group_axes = sorted(axis_of[d] for d in wanted)  # keep grid order: slower dims first
    other_axes = [a for a in range(len(names)) if a not in group_axes]
    moved = np.transpose(grid, other_axes + group_axes)
    group_size = int(np.prod([grid.shape[a] for a in group_axes]))
    return moved.reshape(-1, group_size).tolist()


@dataclass
class ParallelLayout:
    """Sizes, this rank's coordinates and groups of one parallel layout."""

    world_size: int
    rank: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    etp: int = 1  # expert tensor parallel
    edp: int = 1  # expert data parallel
    vpp: Optional[int] = None
    order: str = "tp-cp-ep-dp-pp"
    groups: Dict[str, object] = field(default_factory=dict, repr=False)
    group_ranks: Dict[str, List[int]] = field(default_factory=dict)

    def ranks(self, name: str) -> List[int]:
        return self.group_ranks[name]

    def group(self, name: str):
        return self.groups[name]

    def rank_in(self, name: str) -> int:
        return self.group_ranks[name].index(self.rank)

    def size_of(self, name: str) -> int:
        return len(self.group_ranks[name])


_LAYOUT: Optional[ParallelLayout] = None
_VIRTUAL_PP_RANK: Optional[int] = None
# Dense groups: name -> dimensions it spans.
_DENSE_GROUPS = {
    "tp": "tp", "pp": "pp", "cp": "cp", "dp": "dp", "dp-cp": "cp-dp",
    "mp": "tp-pp", "tp-cp": "tp-cp", "tp-dp-cp": "tp-cp-dp",
}
_EXPERT_GROUPS = {"ep": "ep", "etp": "tp", "edp": "dp", "etp-ep": "tp-ep", "etp-ep-pp": "tp-ep-pp"}


def initialize_model_parallel(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: Optional[int] = None,
    pipeline_model_parallel_comm_backend: Optional[str] = None,
    use_sharp: bool = False,
    context_parallel_size: int = 1,
    hierarchical_context_parallel_sizes: Optional[List[int]] = None,
    expert_model_parallel_size: int = 1,
    num_distributed_optimizer_instances: int = 1,
    expert_tensor_parallel_size: Optional[int] = None,
    nccl_communicator_config_path: Optional[str] = None,
    distributed_timeout_minutes: int = 30,
    order: str = "tp-cp-ep-dp-pp",
    **unused_kwargs,
) -> ParallelLayout:
    """Build every process group of the layout (collective: all ranks must call it).

    Signature follows Megatron Core; arguments that only tune NCCL are accepted and unused.
    """
    global _LAYOUT, _VIRTUAL_PP_RANK
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialized: call torch.distributed.init_process_group first")
    world_size, rank = dist.get_world_size(), dist.get_rank()
    tp, pp, cp, ep = (tensor_model_parallel_size, pipeline_model_parallel_size,
                      context_parallel_size, expert_model_parallel_size)
    etp = expert_tensor_parallel_size or tp
    model_size = tp * pp * cp
    if world_size % model_size != 0:
        raise ValueError(
            f"world size {world_size} is not divisible by tensor ({tp}) x pipeline ({pp}) x context ({cp}) "
            f"parallel sizes = {model_size}")
    dp = world_size // model_size
    if world_size % (etp * ep * pp) != 0:
        raise ValueError(f"world size {world_size} is not divisible by expert-tensor ({etp}) x expert ({ep}) x "
                         f"pipeline ({pp}) parallel sizes")
    if dp * cp * tp % (etp * ep) != 0:
        raise ValueError(f"expert parallel size {ep} x expert tensor parallel size {etp} must divide "
                         f"data x context x tensor parallel size {dp * cp * tp}")
    edp = world_size // (etp * ep * pp)
    if "ep" in order.split("-"):
        dense_order = order
    else:
        dense_order = order.replace("dp", "ep-dp")
    layout = ParallelLayout(world_size=world_size, rank=rank, tp=tp, pp=pp, cp=cp, ep=ep, dp=dp,
                            etp=etp, edp=edp, vpp=virtual_pipeline_model_parallel_size, order=dense_order)
    timeout = datetime.timedelta(minutes=distributed_timeout_minutes)

    def build(table, sizes, grid_order):
        for name, dims in table.items():
            for ranks in _rank_grid_groups(world_size, sizes, grid_order, dims):
                group = dist.new_group(ranks, timeout=timeout)  # every rank creates every group
                if rank in ranks:
                    layout.groups[name], layout.group_ranks[name] = group, ranks

    build(_DENSE_GROUPS, {"tp": tp, "cp": cp, "ep": 1, "dp": dp, "pp": pp}, dense_order)
    expert_order = "-".join(d for d in dense_order.split("-") if d != "cp")
    build(_EXPERT_GROUPS, {"tp": etp, "ep": ep, "dp": edp, "pp": pp}, expert_order)
    # Tied input/output embeddings live on the first and last pipeline stage.
    for pp_ranks in _rank_grid_groups(world_size, {"tp": tp, "cp": cp, "ep": 1, "dp": dp, "pp": pp}, dense_order, "pp"):
        embedding_ranks = sorted({pp_ranks[0], pp_ranks[-1]})
        group = dist.new_group(embedding_ranks, timeout=timeout)
        if rank in embedding_ranks:
            layout.groups["embd"], layout.group_ranks["embd"] = group, embedding_ranks
        position_ranks = [pp_ranks[0]]
        group = dist.new_group(position_ranks, timeout=timeout)
        if rank in position_ranks:
            layout.groups["pos-embd"], layout.group_ranks["pos-embd"] = group, position_ranks
    _LAYOUT = layout
    _VIRTUAL_PP_RANK = 0 if virtual_pipeline_model_parallel_size else None
    return layout


def model_parallel_is_initialized() -> bool:
    return _LAYOUT is not None


def destroy_model_parallel() -> None:
    """Forget the layout (the groups are released with the default process group)."""
    global _LAYOUT, _VIRTUAL_PP_RANK
    _LAYOUT = None
    _VIRTUAL_PP_RANK = None


def get_layout() -> ParallelLayout:
    if _LAYOUT is None:
        raise RuntimeError("model parallel is not initialized: call parallel_state.initialize_model_parallel first")
    return _LAYOUT


def _group(name: str, check_initialized: bool = True):
    if _LAYOUT is None:
        if check_initialized:
            get_layout()
        return None
    return _LAYOUT.groups.get(name)


# ---- tensor parallel ------------------------------------------------------------------------
def get_tensor_model_parallel_group(check_initialized: bool = True):
    return _group("tp", check_initialized)


def get_tensor_model_parallel_world_size() -> int:
    return get_layout().tp if _LAYOUT else 1


def get_tensor_model_parallel_rank() -> int:
    return get_layout().rank_in("tp") if _LAYOUT else 0


def get_tensor_model_parallel_src_rank() -> int:
    """Global rank of tensor-parallel rank 0 in this rank's group."""
    return get_layout().ranks("tp")[0]


def get_tensor_model_parallel_ranks() -> List[int]:
    return get_layout().ranks("tp")


# ---- pipeline parallel ----------------------------------------------------------------------
def get_pipeline_model_parallel_group(check_initialized: bool = True):
    return _group("pp", check_initialized)


def get_pipeline_model_parallel_world_size() -> int:
    return get_layout().pp if _LAYOUT else 1


def get_pipeline_model_parallel_rank() -> int:
    return get_layout().rank_in("pp") if _LAYOUT else 0


def get_pipeline_model_parallel_first_rank() -> int:
    return get_layout().ranks("pp")[0]


def get_pipeline_model_parallel_last_rank() -> int:
    return get_layout().ranks("pp")[-1]


def get_pipeline_model_parallel_next_rank() -> int:
    ranks = get_layout().ranks("pp")
    return ranks[(ranks.index(get_layout().rank) + 1) % len(ranks)]


def get_pipeline_model_parallel_prev_rank() -> int:
    ranks = get_layout().ranks("pp")
    return ranks[(ranks.index(get_layout().rank) - 1) % len(ranks)]


def get_virtual_pipeline_model_parallel_world_size() -> Optional[int]:
    return get_layout().vpp if _LAYOUT else None


def get_virtual_pipeline_model_parallel_rank() -> Optional[int]:
    return _VIRTUAL_PP_RANK


def set_virtual_pipeline_model_parallel_rank(rank: Optional[int]) -> None:
    global _VIRTUAL_PP_RANK
    _VIRTUAL_PP_RANK = rank


def is_pipeline_first_stage(ignore_virtual: bool = False) -> bool:
    if not ignore_virtual and get_virtual_pipeline_model_parallel_world_size() and _VIRTUAL_PP_RANK not in (None, 0):
        return False
    return get_pipeline_model_parallel_rank() == 0


def is_pipeline_last_stage(ignore_virtual: bool = False) -> bool:
    vpp = get_virtual_pipeline_model_parallel_world_size()
    if not ignore_virtual and vpp and _VIRTUAL_PP_RANK not in (None, vpp - 1):
        return False
    return get_pipeline_model_parallel_rank() == get_pipeline_model_parallel_world_size() - 1


# ---- data and context parallel ----------------------------------------------------------------
def get_data_parallel_group(with_context_parallel: bool = False, partial_data_parallel: bool = False):
    return _group("dp-cp" if with_context_parallel else "dp")


def get_data_parallel_world_size(with_context_parallel: bool = False, partial_data_parallel: bool = False) -> int:
    if _LAYOUT is None:
        return 1
    return _LAYOUT.size_of("dp-cp" if with_context_parallel else "dp")


def get_data_parallel_rank(with_context_parallel: bool = False, partial_data_parallel: bool = False) -> int:
    if _LAYOUT is None:
        return 0
    return _LAYOUT.rank_in("dp-cp" if with_context_parallel else "dp")


def get_data_parallel_src_rank(with_context_parallel: bool = False) -> int:
    return get_layout().ranks("dp-cp" if with_context_parallel else "dp")[0]


def get_context_parallel_group(check_initialized: bool = True):
    return _group("cp", check_initialized)


def get_context_parallel_world_size() -> int:
    return get_layout().cp if _LAYOUT else 1


def get_context_parallel_rank() -> int:
    return get_layout().rank_in("cp") if _LAYOUT else 0


def get_context_parallel_global_ranks() -> List[int]:
    return get_layout().ranks("cp")


def get_model_parallel_group():
    """Tensor x pipeline group (what fp16 overflow and grad norms reduce over)."""
    return _group("mp")


def get_tensor_and_context_parallel_group():
    return _group("tp-cp")


def get_tensor_and_data_parallel_group(with_context_parallel: bool = False):
    return _group("tp-dp-cp")


# ---- experts ------------------------------------------------------------------------------------
def get_expert_model_parallel_group(check_initialized: bool = True):
    return _group("ep", check_initialized)


def get_expert_model_parallel_world_size() -> int:
    return get_layout().ep if _LAYOUT else 1


def get_expert_model_parallel_rank() -> int:
    return get_layout().rank_in("ep") if _LAYOUT else 0


def get_expert_tensor_parallel_group(check_initialized: bool = True):
    return _group("etp", check_initialized)


def get_expert_tensor_parallel_world_size() -> int:
    return get_layout().etp if _LAYOUT else 1


def get_expert_tensor_parallel_rank() -> int:
    return get_layout().rank_in("etp") if _LAYOUT else 0


def get_expert_data_parallel_group(check_initialized: bool = True):
    return _group("edp", check_initialized)


def get_expert_data_parallel_world_size() -> int:
    return get_layout().edp if _LAYOUT else 1


def get_expert_data_parallel_rank() -> int:
    return get_layout().rank_in("edp") if _LAYOUT else 0


def get_expert_tensor_and_model_parallel_group():
    return _group("etp-ep")


def get_expert_tensor_model_pipeline_parallel_group():
    return _group("etp-ep-pp")


# ---- embeddings shared between first and last pipeline stage ----------------------------------
def get_embedding_group():
    return _group("embd")


def get_position_embedding_group():
    return _group("pos-embd")


def is_rank_in_embedding_group(ignore_virtual: bool = False) -> bool:
    layout = get_layout()
    return layout.rank in layout.group_ranks.get("embd", [])


def is_rank_in_position_embedding_group() -> bool:
    layout = get_layout()
    return layout.rank in layout.group_ranks.get("pos-embd", [])
