"""ParamLayout: one typed record of how a parameter sits in the parallel layout.

Each layer records the layouts of its own parameters by attribute name
(:func:`record_param_layout`); :func:`param_layouts` gives a model's table keyed by qualified
parameter name. The table lives on the modules, not on the Parameter objects, because FSDP and
DTensor replace Parameters (and drop their attributes) while module attribute names stay.

Everything that needs to know about a parameter's placement reads this record: initialisation
(param_init: full tensor from (seed, name), this rank's shard cut with :meth:`shard_from_full`),
DDP (which group reduces the gradient), finalize_model_grads (which gradients are partial sums
over tensor parallelism), the optimizer (TP duplicates in the grad norm, decoupled LR for
embeddings and the output layer, tied weights), and checkpoints / HF conversion / DTensor
placements (:meth:`full_from_shards`, :meth:`shard_pieces`).

Megatron's three public attributes ``tensor_model_parallel``, ``partition_dim`` and
``partition_stride`` are still set on the Parameter, derived here (users' checkpoint converters
read them).

Chunks: SwiGLU's fc1 weight is the logical tensor [gate; up] (2 chunks stacked along dim 0). Each
chunk is split across TP ranks separately, so rank r holds [gate_r; up_r]. A checkpoint that wants
logical tensors takes each :class:`ShardPiece`: chunk k's rows [global_start, global_start+length)
of the full tensor live at rows [local_start, local_start+length) of this rank's shard.
"""
import enum
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch


class ParamRole(str, enum.Enum):
    WEIGHT = "weight"                          # a linear layer's weight
    BIAS = "bias"
    NORM = "norm"                              # a normalisation's weight or bias
    EMBEDDING = "embedding"                    # the input word embeddings
    POSITION_EMBEDDING = "position_embedding"  # learned absolute positions
    OUTPUT = "output"                          # the output (logits) layer


@dataclass(frozen=True)
class ShardPiece:
    """A contiguous run of this rank's shard along the partition dim, and where it sits in the full tensor."""

    chunk: int
    local_start: int
    global_start: int
    length: int


@dataclass(frozen=True)
class ParamLayout:
    """How one parameter (this rank's shard) relates to its full tensor and to the process groups.

    full_shape: the logical tensor's shape (unsharded, without vocabulary padding).
    partition_dim: dimension split across tensor-parallel ranks; None: replicated.
    chunks: the full tensor is that many logical pieces stacked along partition_dim, each split
        across ranks separately (SwiGLU's [gate; up]: 2).
    padded_size: the full tensor is zero-padded to this size along partition_dim before the split
        (vocabulary padding); None: no padding.
    tp_rank, tp_size: this rank's coordinates in the tensor-parallel group that splits it.
    tp_group: the ProcessGroupCollection field of that group ("tp"; "expt_tp" for experts).
    grad_reduce_group: the ProcessGroupCollection field the gradient is reduced over by
        data parallelism ("dp_cp" for dense parameters, "expt_dp" for experts).
    grad_partial_over_tp: each TP rank holds a partial gradient (norms and row-parallel biases
        under sequence parallelism, q/k norms): it must be summed over tp_group after backward.
    role: what the parameter is (decoupled LR for EMBEDDING/OUTPUT, no weight decay for norms...).
    tied_to: qualified name of the parameter this one is a copy of (an output layer tied to the
        input embedding on another pipeline stage): initialised from it, counted once in norms.
    init_method: fills the full tensor in place; None: not initialised by the library.
    """

    full_shape: Tuple[int, ...]
    partition_dim: Optional[int] = None
    chunks: int = 1
    padded_size: Optional[int] = None
    tp_rank: int = 0
    tp_size: int = 1
    tp_group: str = "tp"
    grad_reduce_group: str = "dp_cp"
    grad_partial_over_tp: bool = False
    role: ParamRole = ParamRole.WEIGHT
    tied_to: Optional[str] = None
    init_method: Optional[Callable[[torch.Tensor], object]] = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "full_shape", tuple(int(s) for s in self.full_shape))
        if self.partition_dim is None:
            return
        if not 0 <= self.partition_dim < len(self.full_shape):
            raise ValueError(f"partition_dim {self.partition_dim} is outside full shape {self.full_shape}")
        if self.padded_size is not None and self.chunks != 1:
            raise ValueError("a padded parameter cannot also be chunked")
        size = self.padded_full_shape[self.partition_dim]
        if size % (self.chunks * self.tp_size) != 0:
            raise ValueError(f"dimension {self.partition_dim} of {self.padded_full_shape} does not split into "
                             f"{self.chunks} chunk(s) x {self.tp_size} tensor-parallel ranks")

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def is_tensor_parallel(self) -> bool:
        return self.partition_dim is not None

    @property
    def padded_full_shape(self) -> Tuple[int, ...]:
        if self.partition_dim is None or self.padded_size is None:
            return self.full_shape
        shape = list(self.full_shape)
        shape[self.partition_dim] = self.padded_size
        return tuple(shape)

    @property
    def local_shape(self) -> Tuple[int, ...]:
        shape = list(self.padded_full_shape)
        if self.partition_dim is not None:
            shape[self.partition_dim] //= self.tp_size
        return tuple(shape)

    def shard_pieces(self) -> List[ShardPiece]:
        """Where this rank's shard sits in the full (unpadded) tensor, along partition_dim, one piece
        per chunk; padding rows are left out. A replicated parameter is one piece covering dim 0."""
        if self.partition_dim is None:
            return [ShardPiece(0, 0, 0, self.full_shape[0] if self.full_shape else 1)]
        dim = self.partition_dim
        chunk_size = self.padded_full_shape[dim] // self.chunks
        per_rank = chunk_size // self.tp_size
        pieces = []
        for k in range(self.chunks):
            start = k * chunk_size + self.tp_rank * per_rank
            length = max(0, min(per_rank, self.full_shape[dim] - start))
            pieces.append(ShardPiece(k, k * per_rank, start, length))
        return pieces

    def shard_from_full(self, full: torch.Tensor) -> torch.Tensor:
        """This rank's shard, cut from the full (unpadded) tensor."""
        if self.partition_dim is None:
            return full
        dim = self.partition_dim
        if self.padded_size is not None and self.padded_size > full.size(dim):
            pad_shape = list(full.shape)
            pad_shape[dim] = self.padded_size - full.size(dim)
            full = torch.cat([full, full.new_zeros(pad_shape)], dim=dim)
        pieces = full.chunk(self.chunks, dim=dim)
        return torch.cat([piece.chunk(self.tp_size, dim=dim)[self.tp_rank] for piece in pieces], dim=dim)

    def full_from_shards(self, shards: Sequence[torch.Tensor]) -> torch.Tensor:
        """The full (unpadded) tensor from every TP rank's shard, ``shards`` ordered by TP rank."""
        if self.partition_dim is None:
            return shards[0]
        dim = self.partition_dim
        per_rank_pieces = [shard.chunk(self.chunks, dim=dim) for shard in shards]
        pieces = [torch.cat([rank_pieces[k] for rank_pieces in per_rank_pieces], dim=dim)
                  for k in range(self.chunks)]
        return torch.cat(pieces, dim=dim).narrow(dim, 0, self.full_shape[dim])

    def tp_placement(self):
        """The DTensor placement of this parameter over the tensor-parallel mesh dimension:
        ``Replicate()``, ``Shard(partition_dim)``, or None when no plain placement describes it
        (chunked like SwiGLU's fc1, or padded like the vocabulary: use shard_pieces instead)."""
        from torch.distributed.tensor import Replicate, Shard
        if self.partition_dim is None:
            return Replicate()
        if self.chunks == 1 and self.padded_full_shape == self.full_shape:
            return Shard(self.partition_dim)
        return None

    def megatron_attributes(self) -> Dict[str, object]:
        """Megatron's public Parameter attributes, derived from this record."""
        return {"tensor_model_parallel": self.is_tensor_parallel,
                "partition_dim": self.partition_dim if self.partition_dim is not None else -1,
                "partition_stride": self.chunks}


_TABLE_ATTR = "_param_layouts"


def record_param_layout(module: torch.nn.Module, attr: str, layout: ParamLayout) -> None:
    """Record the layout of ``module.<attr>`` and set Megatron's attributes on the Parameter."""
    table = module.__dict__.setdefault(_TABLE_ATTR, {})
    table[attr] = layout
    param = getattr(module, attr, None)
    if isinstance(param, torch.nn.Parameter):
        for name, value in layout.megatron_attributes().items():
            setattr(param, name, value)


def update_param_layout(module: torch.nn.Module, attr: str, **changes) -> None:
    """Change fields of a recorded layout (e.g. an attention marking its q/k norms partial over TP)."""
    record_param_layout(module, attr, replace(module.__dict__[_TABLE_ATTR][attr], **changes))


def own_param_layouts(module: torch.nn.Module) -> Dict[str, ParamLayout]:
    """The layouts ``module`` recorded for its own parameters, by attribute name."""
    return module.__dict__.get(_TABLE_ATTR, {})


def param_layouts(model: torch.nn.Module) -> Dict[str, ParamLayout]:
    """The model's table: qualified parameter name (as ``model.named_parameters()`` gives it) -> layout.

    Parameters no layer recorded (a user's own module) get a layout derived from Megatron's
    attributes when present, else a replicated one.
    """
    table: Dict[str, ParamLayout] = {}
    owners = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for attr, layout in own_param_layouts(module).items():
            owners[f"{prefix}.{attr}" if prefix else attr] = layout
    for name, param in model.named_parameters():
        table[name] = owners.get(name) or layout_from_attributes(param)
    return table


def layout_from_attributes(param: torch.Tensor) -> ParamLayout:
    """A layout for a parameter that only carries Megatron's attributes (or none)."""
    parallel = getattr(param, "tensor_model_parallel", False)
    dim = getattr(param, "partition_dim", -1) if parallel else None
    return ParamLayout(full_shape=tuple(param.shape), partition_dim=dim if dim is not None and dim >= 0 else None,
                       chunks=getattr(param, "partition_stride", 1),
                       grad_reduce_group="dp_cp" if getattr(param, "allreduce", True) else "expt_dp",
                       grad_partial_over_tp=bool(getattr(param, "sequence_parallel", False)))


def counts_here(layout: ParamLayout, pg_collection) -> bool:
    """Whether this rank's copy of a parameter counts in a global sum over the model-parallel ranks
    (grad norm, parameter norm): a replicated one on TP rank 0 only, a tied copy (the output layer
    of the last pipeline stage) not at all, since its original counts."""
    if layout.tied_to is not None:
        return False
    if layout.is_tensor_parallel:
        return True
    from megatron.core.utils import get_pg_rank
    return get_pg_rank(pg_collection.group(layout.tp_group)) == 0

