"""The parallel layout: which ranks form each process group, from the sizes and an order string.

An order string lists the parallel dimensions fastest-varying first (Megatron's default
``tp-cp-ep-dp-pp``: tensor-parallel ranks are adjacent, pipeline stages furthest apart). Any
permutation works; a dimension left out of the string must have size 1 and is appended.

Two grids share one order: the dense grid (tp, cp, dp, pp; expert parallelism folded into data
parallelism) and the expert grid (expert-tp, ep, expert-dp, pp; no cp), as in Megatron Core.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch.distributed as dist

from megatron.core.errors import ConfigError

_DIMS = ("tp", "cp", "ep", "dp", "pp")


def _complete_order(order: str, sizes: Dict[str, int]) -> List[str]:
    names = order.lower().split("-")
    unknown = [n for n in names if n not in _DIMS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(f"parallel order {order!r}: expected distinct dimensions among {'-'.join(_DIMS)}")
    for name in _DIMS:
        if name not in names:
            if sizes[name] != 1:
                raise ConfigError(f"parallel order {order!r} leaves out {name!r}, whose size is {sizes[name]}: "
                                  f"name it in the order (e.g. {'-'.join(_DIMS)})")
            names.append(name)
    return names


class RankGenerator:
    """Megatron Core's rank generator: the rank groups of one grid.

    ``get_ranks('tp-dp')`` lists every group of ranks that differ only in their tp and dp
    coordinates, each group's ranks ascending.
    """

    def __init__(self, tp: int, ep: int, dp: int, pp: int, cp: int, order: str, rank_offset: int = 0):
        self.tp, self.ep, self.dp, self.pp, self.cp = tp, ep, dp, pp, cp
        self.rank_offset = rank_offset
        self.world_size = tp * ep * dp * pp * cp
        self.name_to_size = {"tp": tp, "pp": pp, "dp": dp, "ep": ep, "cp": cp}
        self.dims = _complete_order(order, self.name_to_size)
        self.order = "-".join(self.dims)
        self.ordered_size = [self.name_to_size[d] for d in self.dims]

    def grid(self) -> np.ndarray:
        """Ranks as an array whose axes are the dims slowest first (the last axis is ``dims[0]``)."""
        return np.arange(self.world_size).reshape(list(reversed(self.ordered_size))) + self.rank_offset

    def get_ranks(self, token: str) -> List[List[int]]:
        wanted = token.split("-")
        for d in wanted:
            if d not in self.dims:
                raise ValueError(f"unknown parallel dimension {d!r} in {token!r} (order {self.order})")
        grid = self.grid()
        axis_of = {n: len(self.dims) - 1 - i for i, n in enumerate(self.dims)}
        group_axes = sorted(axis_of[d] for d in wanted)  # grid order keeps each group ascending
        other_axes = [a for a in range(len(self.dims)) if a not in group_axes]
        group_size = int(np.prod([grid.shape[a] for a in group_axes]))
        return np.transpose(grid, other_axes + group_axes).reshape(-1, group_size).tolist()


# Layout group name -> (grid, dimensions it spans). Names follow parallel_state's getters; the
# ProcessGroupCollection field of each is in process_groups_config.
DENSE_GROUPS = {
    "tp": "tp", "pp": "pp", "cp": "cp", "dp": "dp", "dp-cp": "dp-cp", "mp": "tp-pp", "tp-cp": "tp-cp",
    "tp-dp": "tp-dp", "tp-dp-cp": "tp-dp-cp",
}
EXPERT_GROUPS = {"ep": "ep", "etp": "tp", "edp": "dp", "etp-ep": "tp-ep", "etp-ep-pp": "tp-ep-pp"}
# Mesh dimension name -> layout group, slowest first (DeviceMesh's last dimension varies fastest).
_MESH_DIMS = ("pp", "dp", "cp", "tp")


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
    # Gloo twins of the data-parallel groups (CPU-side collectives), when asked for.
    gloo_groups: Dict[str, object] = field(default_factory=dict, repr=False)
    _mesh: object = field(default=None, repr=False)

    def ranks(self, name: str) -> List[int]:
        return self.group_ranks[name]

    def group(self, name: str):
        return self.groups[name]

    def rank_in(self, name: str) -> int:
        return self.group_ranks[name].index(self.rank)

    def size_of(self, name: str) -> int:
        return len(self.group_ranks[name])

    def dense_generator(self) -> RankGenerator:
        return RankGenerator(tp=self.tp, ep=1, dp=self.dp, pp=self.pp, cp=self.cp, order=self.order)

    def device_mesh(self, device_type: Optional[str] = None):
        """A ``torch.distributed.device_mesh.DeviceMesh`` over the dense grid, dims ('pp', 'dp',
        'cp', 'tp'), built once on first use from the groups that already exist (no new
        communicators): ``mesh['tp'].get_group()`` is this layout's tensor-parallel group."""
        if self._mesh is None:
            from torch.distributed.device_mesh import DeviceMesh

            from megatron.core import device
            gen = self.dense_generator()
            grid = gen.grid()  # axes: dims in reverse order
            axes = [len(gen.dims) - 1 - gen.dims.index(name) for name in _MESH_DIMS]
            ep_axis = len(gen.dims) - 1 - gen.dims.index("ep")
            mesh = np.transpose(grid, axes + [ep_axis]).reshape([grid.shape[a] for a in axes])
            self._mesh = DeviceMesh.from_group([self.groups[name] for name in _MESH_DIMS],
                                               device_type or device.device_type(),
                                               mesh=mesh.tolist(), mesh_dim_names=_MESH_DIMS)
        return self._mesh


def build_layout(tp: int, pp: int, cp: int, ep: int, etp: Optional[int], vpp: Optional[int], order: str,
                 timeout_minutes: int, gloo_groups: bool = False) -> ParallelLayout:
    """Create every process group of the layout (collective: every rank calls it with the same sizes)."""
    world_size, rank = dist.get_world_size(), dist.get_rank()
    etp = etp or tp
    model_size = tp * pp * cp
    if world_size % model_size != 0:
        raise ConfigError(
            f"world size {world_size} is not divisible by tensor ({tp}) x pipeline ({pp}) x context ({cp}) "
            f"parallel sizes = {model_size}")
    dp = world_size // model_size
    if world_size % (etp * ep * pp) != 0:
        raise ConfigError(f"world size {world_size} is not divisible by expert-tensor ({etp}) x expert ({ep}) x "
                          f"pipeline ({pp}) parallel sizes")
    if dp * cp * tp % (etp * ep) != 0:
        raise ConfigError(f"expert parallel size {ep} x expert tensor parallel size {etp} must divide "
                          f"data x context x tensor parallel size {dp * cp * tp}")
    edp = world_size // (etp * ep * pp)
    dense = RankGenerator(tp=tp, ep=1, dp=dp, pp=pp, cp=cp, order=order)
    expert = RankGenerator(tp=etp, ep=ep, dp=edp, pp=pp, cp=1, order=order)
    if dense.get_ranks("pp") != expert.get_ranks("pp"):
        raise ConfigError(f"parallel order {order!r}: the expert layers' pipeline groups differ from the dense "
                          "layers'; put pp last or keep expert and dense data-parallel sizes equal")
    # dp is the dense data-parallel size (expert parallelism folds into it).
    layout = ParallelLayout(world_size=world_size, rank=rank, tp=tp, pp=pp, cp=cp, ep=ep, dp=dp,
                            etp=etp, edp=edp, vpp=vpp, order=dense.order)
    timeout = datetime.timedelta(minutes=timeout_minutes)

    def add(name: str, all_ranks: List[List[int]], backend=None, store=layout.groups):
        for ranks in all_ranks:
            group = dist.new_group(ranks, timeout=timeout, backend=backend)  # every rank creates every group
            if rank in ranks:
                store[name] = group
                if store is layout.groups:
                    layout.group_ranks[name] = ranks

    for name, dims in DENSE_GROUPS.items():
        add(name, dense.get_ranks(dims))
    for name, dims in EXPERT_GROUPS.items():
        add(name, expert.get_ranks(dims))
    # Tied input/output embeddings live on the first and last pipeline stage.
    pp_groups = dense.get_ranks("pp")
    add("embd", [sorted({ranks[0], ranks[-1]}) for ranks in pp_groups])
    add("pos-embd", [[ranks[0]] for ranks in pp_groups])
    if gloo_groups:
        # Gloo twins of the data-parallel groups (CPU-side collectives); on a gloo world they are the same.
        if dist.get_backend() == "gloo":
            layout.gloo_groups = {n: layout.groups[n] for n in ("dp", "dp-cp")}
        else:
            for name in ("dp", "dp-cp"):
                add(name, dense.get_ranks(DENSE_GROUPS[name]), backend="gloo", store=layout.gloo_groups)
    return layout
