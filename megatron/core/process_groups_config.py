"""ProcessGroupCollection: the process groups a module uses, passed in explicitly (Megatron Core's class).

Every core module takes ``pg_collection`` (or, for the tensor-parallel layers, ``tp_group``) and
uses what it is given; the global layout of ``parallel_state`` is only the default, filled in by
:meth:`ProcessGroupCollection.use_mpu_process_groups`. Two models built over two collections in one
world therefore never talk over each other's groups.

A field that was never set is absent (``hasattr`` is False), as in Megatron Core. A field set to
None means "no group": a group of this rank alone, so no collective runs over it.
"""
from dataclasses import dataclass, fields
from typing import List, Optional

import torch

from megatron.core.errors import ConfigError

# Field -> the global layout's group name (parallel_state); None: not built by the layout.
_LAYOUT_GROUP = {
    "tp": "tp", "pp": "pp", "mp": "mp", "embd": "embd", "pos_embd": "pos-embd", "cp": "cp", "tp_cp": "tp-cp",
    "hcp": None, "ep": "ep", "expt_tp": "etp", "tp_ep": "etp-ep", "tp_ep_pp": "etp-ep-pp", "tp_dp_cp": "tp-dp-cp",
    "dp": "dp", "dp_cp": "dp-cp", "expt_dp": "edp",
    # One distributed-optimizer instance: the partial data-parallel groups are the whole ones, and
    # there are no inter/intra-instance groups.
    "intra_dp_cp": "dp-cp", "intra_expt_dp": "edp", "inter_dist_opt": None, "intra_dist_opt": None,
}


@dataclass(init=False, repr=False, eq=False)
class ProcessGroupCollection:
    """Model-parallel and gradient-communication groups (Megatron Core's field names).

    tp, pp, mp (tp x pp), embd (first+last pipeline stage), pos_embd, cp, tp_cp, hcp
    (hierarchical cp, a list), ep, expt_tp, tp_ep, tp_ep_pp, tp_dp_cp, dp, dp_cp, expt_dp,
    intra_dp_cp, intra_expt_dp, inter_dist_opt, intra_dist_opt.
    """

    tp: torch.distributed.ProcessGroup
    pp: torch.distributed.ProcessGroup
    mp: torch.distributed.ProcessGroup
    embd: torch.distributed.ProcessGroup
    pos_embd: torch.distributed.ProcessGroup
    cp: torch.distributed.ProcessGroup
    tp_cp: torch.distributed.ProcessGroup
    hcp: List[torch.distributed.ProcessGroup]
    ep: torch.distributed.ProcessGroup
    expt_tp: torch.distributed.ProcessGroup
    tp_ep: torch.distributed.ProcessGroup
    tp_ep_pp: torch.distributed.ProcessGroup
    tp_dp_cp: torch.distributed.ProcessGroup
    dp: torch.distributed.ProcessGroup
    dp_cp: torch.distributed.ProcessGroup
    expt_dp: torch.distributed.ProcessGroup
    intra_dp_cp: torch.distributed.ProcessGroup
    intra_expt_dp: torch.distributed.ProcessGroup
    inter_dist_opt: torch.distributed.ProcessGroup
    intra_dist_opt: torch.distributed.ProcessGroup

    def __init__(self, **groups):
        names = {f.name for f in fields(self)}
        for key, group in groups.items():
            if key not in names:
                raise ValueError(f"ProcessGroupCollection has no field {key!r} (fields: {', '.join(sorted(names))})")
            setattr(self, key, group)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            if hasattr(self, f.name):
                group = getattr(self, f.name)
                size = "None" if group is None else (len(group) if isinstance(group, list) else group.size())
                parts.append(f"{f.name}({size})")
        return f"ProcessGroupCollection({', '.join(parts) or 'empty'})"

    @classmethod
    def use_mpu_process_groups(cls, required_pgs: Optional[List[str]] = None) -> "ProcessGroupCollection":
        """The global layout's groups (all fields, or only ``required_pgs``). Before
        initialize_model_parallel every group is None (one process, no collectives)."""
        from megatron.core import parallel_state
        wanted = list(_LAYOUT_GROUP) if required_pgs is None else list(required_pgs)
        invalid = [name for name in wanted if name not in _LAYOUT_GROUP]
        if invalid:
            raise ValueError(f"Invalid process groups requested: {invalid}")
        layout = parallel_state._LAYOUT
        groups = {}
        for name in wanted:
            layout_name = _LAYOUT_GROUP[name]
            groups[name] = layout.groups.get(layout_name) if layout is not None and layout_name else None
        return cls(**groups)

    def group(self, name: str):
        """Field ``name``, with a message naming it when this collection lacks it."""
        if not hasattr(self, name):
            raise ConfigError(f"the ProcessGroupCollection given has no {name!r} group: set pg_collection.{name} "
                              "(or build it with ProcessGroupCollection.use_mpu_process_groups())")
        return getattr(self, name)


def default_pg_collection(pg_collection: Optional[ProcessGroupCollection]) -> ProcessGroupCollection:
    """``pg_collection`` itself, or the global layout's groups when None."""
    return pg_collection if pg_collection is not None else ProcessGroupCollection.use_mpu_process_groups()
