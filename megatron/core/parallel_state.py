"""The global parallel layout, with Megatron Core's function names.

One object, :class:`ParallelLayout` (parallel_layout.py), knows the sizes, this rank's coordinates
and its groups; the module-level ``get_*`` functions are the Megatron-compatible way to read the
global one. Library modules do not read it: they take a ``ProcessGroupCollection`` (or a
``tp_group``) and fall back to this layout only when none is given.

Rank order defaults to Megatron's ``tp-cp-ep-dp-pp`` (tensor-parallel ranks adjacent, pipeline
stages furthest apart); any permutation, with or without ``cp``/``ep``, is accepted. The
``set_*`` functions override a size or rank for code that fakes a layout (Megatron's tests do).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch.distributed as dist

from megatron.core.parallel_layout import ParallelLayout, RankGenerator, build_layout
from megatron.core.utils import no_effect, reject_unsupported

__all__ = ["ParallelLayout", "RankGenerator"]

_LAYOUT: Optional[ParallelLayout] = None
_VIRTUAL_PP_RANK: Optional[int] = None
# Values forced by the set_* functions, by getter name.
_OVERRIDES: Dict[str, Optional[int]] = {}


def _rank_grid_groups(world_size: int, sizes: Dict[str, int], order: str, dims: str) -> List[List[int]]:
    """All rank groups that vary over ``dims`` in the ``order`` grid (kept for older tests)."""
    gen = RankGenerator(tp=sizes.get("tp", 1), ep=sizes.get("ep", 1), dp=sizes.get("dp", 1),
                        pp=sizes.get("pp", 1), cp=sizes.get("cp", 1), order=order)
    if gen.world_size != world_size:
        raise ValueError(f"parallel sizes {sizes} multiply to {gen.world_size}, not the world size {world_size}")
    return gen.get_ranks(dims)


def initialize_model_parallel(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: Optional[int] = None,
    pipeline_model_parallel_comm_backend: Optional[str] = None,
    use_sharp: bool = False,
    context_parallel_size: int = 1,
    hierarchical_context_parallel_sizes: Optional[List[int]] = None,
    hybrid_context_parallel: bool = False,
    expert_model_parallel_size: int = 1,
    num_distributed_optimizer_instances: int = 1,
    expert_tensor_parallel_size: Optional[int] = None,
    nccl_communicator_config_path: Optional[str] = None,
    distributed_timeout_minutes: int = 30,
    order: str = "tp-cp-ep-dp-pp",
    get_embedding_ranks: Optional[Callable] = None,
    get_position_embedding_ranks: Optional[Callable] = None,
    create_gloo_process_groups: bool = True,
    high_priority_stream_groups: Optional[List[str]] = None,
    sharp_enabled_group: Optional[str] = None,
    create_all_gather_group: Optional[bool] = False,
    **other_kwargs,
) -> ParallelLayout:
    """Build every process group of the layout (collective: all ranks must call it)."""
    global _LAYOUT, _VIRTUAL_PP_RANK
    reject_unsupported(
        "initialize_model_parallel",
        {"use_sharp": False, "hybrid_context_parallel": False, "num_distributed_optimizer_instances": 1,
         "create_all_gather_group": False},
        pipeline_model_parallel_comm_backend=pipeline_model_parallel_comm_backend, use_sharp=use_sharp,
        hierarchical_context_parallel_sizes=hierarchical_context_parallel_sizes,
        hybrid_context_parallel=hybrid_context_parallel,
        num_distributed_optimizer_instances=num_distributed_optimizer_instances,
        nccl_communicator_config_path=nccl_communicator_config_path, get_embedding_ranks=get_embedding_ranks,
        get_position_embedding_ranks=get_position_embedding_ranks,
        high_priority_stream_groups=high_priority_stream_groups or None, sharp_enabled_group=sharp_enabled_group,
        create_all_gather_group=create_all_gather_group or False, **other_kwargs)
    if not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialized: call torch.distributed.init_process_group first")
    _LAYOUT = build_layout(tensor_model_parallel_size, pipeline_model_parallel_size, context_parallel_size,
                           expert_model_parallel_size, expert_tensor_parallel_size,
                           virtual_pipeline_model_parallel_size, order, distributed_timeout_minutes,
                           gloo_groups=create_gloo_process_groups)
    _VIRTUAL_PP_RANK = 0 if virtual_pipeline_model_parallel_size else None
    return _LAYOUT


def is_initialized() -> bool:
    return _LAYOUT is not None


model_parallel_is_initialized = is_initialized


def destroy_model_parallel() -> None:
    """Forget the layout (the groups are released with the default process group)."""
    global _LAYOUT, _VIRTUAL_PP_RANK
    _LAYOUT = None
    _VIRTUAL_PP_RANK = None
    _OVERRIDES.clear()


def get_layout() -> ParallelLayout:
    if _LAYOUT is None:
        raise RuntimeError("model parallel is not initialized: call parallel_state.initialize_model_parallel first")
    return _LAYOUT


def get_device_mesh(device_type: Optional[str] = None):
    """The global layout's DeviceMesh (dims 'pp', 'dp', 'cp', 'tp'), built on first use."""
    return get_layout().device_mesh(device_type)


def _group(name: str, check_initialized: bool = True):
    if _LAYOUT is None:
        if check_initialized:
            get_layout()
        return None
    return _LAYOUT.groups.get(name)


def _size(name: str, key: str) -> int:
    if _OVERRIDES.get(f"{key}_size") is not None:
        return _OVERRIDES[f"{key}_size"]
    return _LAYOUT.size_of(name) if _LAYOUT else 1


def _rank(name: str, key: str) -> int:
    if _OVERRIDES.get(f"{key}_rank") is not None:
        return _OVERRIDES[f"{key}_rank"]
    return _LAYOUT.rank_in(name) if _LAYOUT else 0


def _setter(key: str):
    def set_value(value: Optional[int]) -> None:
        _OVERRIDES[key] = value
    set_value.__name__ = f"set_{key}"
    set_value.__doc__ = "Force the value the matching getter returns (None: back to the layout's)."
    return set_value


set_tensor_model_parallel_world_size = _setter("tp_size")
set_tensor_model_parallel_rank = _setter("tp_rank")
set_pipeline_model_parallel_world_size = _setter("pp_size")
set_pipeline_model_parallel_rank = _setter("pp_rank")
set_data_parallel_rank = _setter("dp_rank")
set_expert_model_parallel_world_size = _setter("ep_size")
set_expert_model_parallel_rank = _setter("ep_rank")
set_expert_tensor_parallel_world_size = _setter("etp_size")
set_expert_tensor_parallel_rank = _setter("etp_rank")
set_virtual_pipeline_model_parallel_world_size = _setter("vpp_size")


# ---- tensor parallel ------------------------------------------------------------------------
def get_tensor_model_parallel_group(check_initialized: bool = True):
    return _group("tp", check_initialized)


def get_tensor_model_parallel_world_size() -> int:
    return _size("tp", "tp")


def get_tensor_model_parallel_rank() -> int:
    return _rank("tp", "tp")


def get_tensor_model_parallel_src_rank() -> int:
    """Global rank of tensor-parallel rank 0 in this rank's group."""
    return get_layout().ranks("tp")[0]


def get_tensor_model_parallel_ranks() -> List[int]:
    return get_layout().ranks("tp")


# ---- pipeline parallel ----------------------------------------------------------------------
def get_pipeline_model_parallel_group(check_initialized: bool = True):
    return _group("pp", check_initialized)


def get_pipeline_model_parallel_world_size() -> int:
    return _size("pp", "pp")


def get_pipeline_model_parallel_rank() -> int:
    return _rank("pp", "pp")


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
    if "vpp_size" in _OVERRIDES:
        return _OVERRIDES["vpp_size"]
    return _LAYOUT.vpp if _LAYOUT else None


def get_virtual_pipeline_model_parallel_rank() -> Optional[int]:
    """The global virtual stage (set_virtual_pipeline_model_parallel_rank); library code passes
    ``vp_stage`` instead of reading this."""
    return _VIRTUAL_PP_RANK


def set_virtual_pipeline_model_parallel_rank(rank: Optional[int]) -> None:
    global _VIRTUAL_PP_RANK
    _VIRTUAL_PP_RANK = rank


def _check_vp_stage(ignore_virtual: bool, vp_stage: Optional[int]) -> Optional[int]:
    """The virtual stage to test, or None when virtual stages do not matter."""
    vpp = get_virtual_pipeline_model_parallel_world_size()
    if ignore_virtual or vpp is None:
        return None
    if vp_stage is None:
        raise ValueError("with virtual pipeline stages, is_pipeline_first_stage/last_stage(ignore_virtual=False) "
                         "need vp_stage= (the model chunk's virtual stage)")
    return vp_stage


def is_pipeline_first_stage(ignore_virtual: bool = True, vp_stage: Optional[int] = None) -> bool:
    """This rank is the first pipeline stage (and, unless ``ignore_virtual``, ``vp_stage`` is 0)."""
    stage = _check_vp_stage(ignore_virtual, vp_stage)
    if stage is not None and stage != 0:
        return False
    return get_pipeline_model_parallel_rank() == 0


def is_pipeline_last_stage(ignore_virtual: bool = True, vp_stage: Optional[int] = None) -> bool:
    """This rank is the last pipeline stage (and, unless ``ignore_virtual``, ``vp_stage`` the last)."""
    stage = _check_vp_stage(ignore_virtual, vp_stage)
    if stage is not None and stage != get_virtual_pipeline_model_parallel_world_size() - 1:
        return False
    return get_pipeline_model_parallel_rank() == get_pipeline_model_parallel_world_size() - 1


# ---- data and context parallel ----------------------------------------------------------------
def _dp_name(with_context_parallel: bool, partial_data_parallel: bool) -> str:
    # One distributed-optimizer instance (the only one supported): the partial data-parallel group
    # is the whole data-parallel group.
    no_effect("one distributed-optimizer instance: partial == full data-parallel group", partial_data_parallel)
    return "dp-cp" if with_context_parallel else "dp"


def get_data_parallel_group(with_context_parallel: bool = False, partial_data_parallel: bool = False):
    return _group(_dp_name(with_context_parallel, partial_data_parallel))


def get_data_parallel_group_gloo(with_context_parallel: bool = False, partial_data_parallel: bool = False):
    """The gloo twin of the data-parallel group (initialize_model_parallel(create_gloo_process_groups=True))."""
    name = _dp_name(with_context_parallel, partial_data_parallel)
    groups = get_layout().gloo_groups
    if name not in groups:
        raise RuntimeError("gloo process groups were not created: initialize_model_parallel(create_gloo_process_groups=True)")
    return groups[name]


def get_data_parallel_world_size(with_context_parallel: bool = False, partial_data_parallel: bool = False) -> int:
    name = _dp_name(with_context_parallel, partial_data_parallel)
    return _LAYOUT.size_of(name) if _LAYOUT else 1


def get_data_parallel_rank(with_context_parallel: bool = False, partial_data_parallel: bool = False) -> int:
    return _rank(_dp_name(with_context_parallel, partial_data_parallel), "dp")


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


def get_hierarchical_context_parallel_groups(check_initialized: bool = True):
    """Hierarchical context parallelism is not supported: there are none."""
    no_effect("initialize_model_parallel rejects hierarchical_context_parallel_sizes", check_initialized)
    return None


def get_model_parallel_group(check_initialized: bool = True):
    """Tensor x pipeline group (what fp16 overflow and grad norms reduce over)."""
    return _group("mp", check_initialized)


def get_tensor_and_context_parallel_group(check_initialized: bool = True):
    return _group("tp-cp", check_initialized)


def get_tensor_and_data_parallel_group(check_initialized: bool = True, with_context_parallel: bool = False):
    return _group("tp-dp-cp" if with_context_parallel else "tp-dp", check_initialized)


def get_intra_distributed_optimizer_instance_group(check_initialized: bool = True):
    """One distributed-optimizer instance: no intra-instance group of its own (None)."""
    no_effect("a single distributed-optimizer instance", check_initialized)
    return None


def get_inter_distributed_optimizer_instance_group(check_initialized: bool = True):
    """One distributed-optimizer instance: no inter-instance group (None)."""
    no_effect("a single distributed-optimizer instance", check_initialized)
    return None


# ---- experts ------------------------------------------------------------------------------------
def get_expert_model_parallel_group(check_initialized: bool = True):
    return _group("ep", check_initialized)


def get_expert_model_parallel_world_size() -> int:
    return _size("ep", "ep")


def get_expert_model_parallel_rank() -> int:
    return _rank("ep", "ep")


def get_expert_tensor_parallel_group(check_initialized: bool = True):
    return _group("etp", check_initialized)


def get_expert_tensor_parallel_world_size() -> int:
    return _size("etp", "etp")


def get_expert_tensor_parallel_rank() -> int:
    return _rank("etp", "etp")


def get_expert_data_parallel_group(check_initialized: bool = True, partial_expert_data_parallel: bool = False):
    no_effect("one distributed-optimizer instance: partial == full", partial_expert_data_parallel)
    return _group("edp", check_initialized)


def get_expert_data_parallel_world_size() -> int:
    return get_layout().edp if _LAYOUT else 1


def get_expert_data_parallel_rank() -> int:
    return get_layout().rank_in("edp") if _LAYOUT else 0


def get_expert_tensor_and_model_parallel_group(check_initialized: bool = True):
    return _group("etp-ep", check_initialized)


def get_expert_tensor_model_pipeline_parallel_group(check_initialized: bool = True):
    return _group("etp-ep-pp", check_initialized)


# ---- embeddings shared between first and last pipeline stage ----------------------------------
def get_embedding_group(check_initialized: bool = True):
    return _group("embd", check_initialized)


def get_position_embedding_group(check_initialized: bool = True):
    return _group("pos-embd", check_initialized)


def is_rank_in_embedding_group(ignore_virtual: bool = True, vp_stage: Optional[int] = None) -> bool:
    """This rank holds the input or output embedding (unless ``ignore_virtual``: and ``vp_stage``
    is the chunk that holds it)."""
    layout = get_layout()
    ranks = layout.group_ranks.get("embd", [])
    if layout.rank not in ranks:
        return False
    if ignore_virtual:
        return True
    if layout.rank == ranks[0] and is_pipeline_first_stage(False, vp_stage):
        return True
    return layout.rank == ranks[-1] and is_pipeline_last_stage(False, vp_stage)


def is_rank_in_position_embedding_group() -> bool:
    layout = get_layout()
    return layout.rank in layout.group_ranks.get("pos-embd", [])
