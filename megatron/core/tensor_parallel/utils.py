"""Small helpers shared by the tensor-parallel layers."""
from typing import List, Sequence

import torch
import torch.distributed as dist

from megatron.core.utils import get_pg_rank, get_pg_size, no_effect


def divide(numerator: int, denominator: int) -> int:
    """Exact integer division, with an error that says which sizes did not divide."""
    if numerator % denominator != 0:
        raise ValueError(f"{numerator} is not divisible by {denominator}")
    return numerator // denominator


def split_tensor_along_last_dim(tensor: torch.Tensor, num_partitions: int,
                                contiguous_split_chunks: bool = False) -> Sequence[torch.Tensor]:
    last_dim_size = divide(tensor.size(-1), num_partitions)
    chunks = torch.split(tensor, last_dim_size, dim=-1)
    if contiguous_split_chunks:
        return tuple(chunk.contiguous() for chunk in chunks)
    return chunks


class VocabUtility:
    """Which slice [first, last) of the vocabulary a tensor-parallel rank owns."""

    @staticmethod
    def vocab_range_from_per_partition_vocab_size(per_partition_vocab_size: int, rank: int,
                                                  world_size: int) -> List[int]:
        no_effect("the range follows from the partition size and the rank alone", world_size)
        first = rank * per_partition_vocab_size
        return [first, first + per_partition_vocab_size]

    @staticmethod
    def vocab_range_from_global_vocab_size(global_vocab_size: int, rank: int, world_size: int) -> List[int]:
        per_partition = divide(global_vocab_size, world_size)
        return VocabUtility.vocab_range_from_per_partition_vocab_size(per_partition, rank, world_size)


def split_tensor_into_1d_equal_chunks(tensor: torch.Tensor, new_buffer: bool = False, tp_group=None) -> torch.Tensor:
    """This tensor-parallel rank's equal slice of ``tensor`` flattened (a copy when ``new_buffer``)."""
    from megatron.core.tensor_parallel.mappings import resolve_tp_group
    group = resolve_tp_group(tp_group)
    flat = tensor.reshape(-1)
    part = divide(flat.numel(), get_pg_size(group))
    chunk = flat[get_pg_rank(group) * part:(get_pg_rank(group) + 1) * part]
    return chunk.clone() if new_buffer else chunk


def gather_split_1d_tensor(tensor: torch.Tensor, tp_group=None) -> torch.Tensor:
    """Inverse of split_tensor_into_1d_equal_chunks: every rank's slice, concatenated (1-D)."""
    from megatron.core.tensor_parallel.mappings import resolve_tp_group
    group = resolve_tp_group(tp_group)
    size = get_pg_size(group)
    if size == 1:
        return tensor.reshape(-1)
    out = torch.empty(tensor.numel() * size, dtype=tensor.dtype, device=tensor.device)
    dist.all_gather_into_tensor(out, tensor.contiguous().reshape(-1), group=group)
    return out
