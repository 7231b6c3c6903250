"""The interleaved 1F1B schedule as a plan: per rank, a list of slots, each "compute, then exchange".

Chunk order (Megatron's): the M micro-batches are cut into groups of G
(``microbatch_group_size_per_vp_stage``, default the pipeline size p; the last group takes the
rest); within a group, chunk 0 runs the group's micro-batches, then chunk 1, ... . Backward runs
the same order with the chunks reversed. Rank r runs W_r = 2 (p - r - 1) + (v - 1) G forwards
before its first backward.

Slot i of rank r computes forward unit F[i] (if i < v M) and backward unit B[i - W_r] (if any),
then makes one exchange with its neighbours. The exchanges are aligned in time: slot i of rank r
happens at step t = i + r, and exchanges only with the neighbours' slots of the same step (slot
i + r - q of rank q). At each step every rank therefore knows, from the plan alone, what its
neighbours send it, and the steps' exchanges complete one after the other, with no wait on a
later step (no deadlock). The ring: stage p - 1's chunk c feeds stage 0's chunk c + 1 (and its
gradient flows back the same way). With G >= p and a last group of at least p (the rules the
schedule checks), every activation and gradient arrives before the slot that needs it; received
tensors wait in a queue per chunk, in micro-batch order. When W_r exceeds v M the slots between
the last forward and the first backward compute nothing (the pipeline is too short to fill).
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple


@dataclass(frozen=True)
class Unit:
    """One micro-batch through one model chunk."""
    microbatch: int
    chunk: int


@dataclass(frozen=True)
class Slot:
    """What a rank does at one step: compute (forward and/or backward), then exchange.

    ``send_next``: the forward's output goes to the next rank; ``send_prev``: the backward's input
    gradient goes to the previous rank. ``recv_prev``/``recv_next``: the chunk whose input
    activation / output gradient arrives from the previous / next rank (None: nothing arrives).
    """
    index: int
    forward: Optional[Unit]
    backward: Optional[Unit]
    send_next: bool
    send_prev: bool
    recv_prev: Optional[int]
    recv_next: Optional[int]

    @property
    def exchanges(self) -> bool:
        return self.send_next or self.send_prev or self.recv_prev is not None or self.recv_next is not None


def forward_order(num_microbatches: int, num_chunks: int, group_size: int) -> List[Unit]:
    """Every rank's forward order (Megatron's schedule table)."""
    order = []
    for start in range(0, num_microbatches, group_size):
        end = num_microbatches if start + group_size >= num_microbatches else start + group_size
        order += [Unit(m, c) for c in range(num_chunks) for m in range(start, end)]
    return order


def get_schedule_table(num_microbatches: int, num_model_chunks: int,
                       microbatch_group_size_per_vp_stage: int) -> List[Tuple[int, int]]:
    """Megatron Core's name for the forward order: [(microbatch_id, model_chunk_id), ...]."""
    return [(u.microbatch, u.chunk)
            for u in forward_order(num_microbatches, num_model_chunks, microbatch_group_size_per_vp_stage)]


def backward_order(num_microbatches: int, num_chunks: int, group_size: int) -> List[Unit]:
    """Every rank's backward order: the forward order with the chunks reversed."""
    return [Unit(u.microbatch, num_chunks - 1 - u.chunk) for u in forward_order(num_microbatches, num_chunks, group_size)]


def num_warmup_forwards(pp_size: int, pp_rank: int, num_chunks: int, group_size: int) -> int:
    """Forwards before rank ``pp_rank``'s first backward (may exceed the step's forwards)."""
    return 2 * (pp_size - pp_rank - 1) + (num_chunks - 1) * group_size


class _Plan:
    def __init__(self, pp_size, num_microbatches, num_chunks, group_size, forward_only):
        self.p, self.v, self.forward_only = pp_size, num_chunks, forward_only
        self.forwards = forward_order(num_microbatches, num_chunks, group_size)
        self.backwards = backward_order(num_microbatches, num_chunks, group_size)
        self.warmup = [num_warmup_forwards(pp_size, r, num_chunks, group_size) for r in range(pp_size)]

    def units(self, rank: int, i: int):
        total = len(self.forwards)
        forward = self.forwards[i] if 0 <= i < total else None
        j = i - self.warmup[rank]
        backward = self.backwards[j] if not self.forward_only and 0 <= j < total else None
        return forward, backward

    def sends(self, rank: int, i: int):
        """(unit whose output goes to the next rank, unit whose input gradient goes to the previous)."""
        forward, backward = self.units(rank, i)
        if forward is not None and rank == self.p - 1 and forward.chunk == self.v - 1:
            forward = None  # the loss: nothing to send
        if backward is not None and rank == 0 and backward.chunk == 0:
            backward = None  # the model's input: no gradient to send
        return forward, backward

    def slot(self, rank: int, i: int) -> Slot:
        forward, backward = self.units(rank, i)
        sent_forward, sent_backward = self.sends(rank, i)
        prev, nxt = (rank - 1) % self.p, (rank + 1) % self.p
        from_prev = self.sends(prev, i + rank - prev)[0]  # the previous rank's slot of the same step
        from_next = self.sends(nxt, i + rank - nxt)[1]
        # Across the ring's wrap-around the chunk moves on by one (stage p-1, chunk c -> stage 0, chunk c+1).
        recv_prev = None if from_prev is None else from_prev.chunk + (1 if rank == 0 else 0)
        recv_next = None if from_next is None else from_next.chunk - (1 if rank == self.p - 1 else 0)
        return Slot(i, forward, backward, sent_forward is not None, sent_backward is not None, recv_prev, recv_next)

    def last_index(self) -> int:
        # Past every rank's last backward, and past every neighbour's last send (at most p - 1 steps on).
        return len(self.forwards) + (0 if self.forward_only else self.warmup[0]) + self.p


def interleaved_plan(pp_size: int, pp_rank: int, num_microbatches: int, num_chunks: int, group_size: int,
                     forward_only: bool = False) -> List[Slot]:
    """Rank ``pp_rank``'s slots in order (slots that neither compute nor exchange are left out)."""
    plan = _Plan(pp_size, num_microbatches, num_chunks, group_size, forward_only)
    slots = (plan.slot(pp_rank, i) for i in range(-pp_size, plan.last_index() + 1))
    return [s for s in slots if s.forward is not None or s.backward is not None or s.exchanges]
