"""Pipeline communication and the 1F1B schedule's memory bound, on real ranks (gloo).

1. P2PCommunicator: every method moves exactly what was sent to the right neighbour, batched and
   not, along a 4-stage chain and around the ring (the interleaved schedule's wrap-around), with
   two stages joined both ways (previous == next rank), and with the sequence-parallel activation
   shape under TP=2 x PP=2.
2. Memory: the tensors autograd holds for backward (counted by saved_tensors_hooks, bytes of the
   live storages) peak on stage r of 4 at (4 - r) micro-batches' worth under 1F1B, for 4 and for
   12 micro-batches; the same meter on an all-forwards-then-all-backwards order grows with the
   number of micro-batches (the control that shows the meter can fail). Output deallocation frees
   what was sent and leaves every gradient as it was.
"""
import weakref

import pytest
import torch
import torch.distributed as dist

from megatron.core import parallel_state as ps
from megatron.core.errors import ConfigError, NotSupportedError
from megatron.core.model_parallel_config import ModelParallelConfig
from megatron.core.pipeline_parallel import ScheduleHooks
from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator
from megatron.core.pipeline_parallel.schedules import (
    forward_backward_pipelining_without_interleaving, get_tensor_shapes)
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.transformer_config import TransformerConfig
from tests.harness import run_distributed

SHAPE = (3, 2, 4)


def _value(global_rank: int, what: int) -> torch.Tensor:
    """A tensor that names its sender and what it is (activation 0, gradient 1, ...)."""
    return torch.arange(24, dtype=torch.float32).view(SHAPE) + 1000 * global_rank + 100 * what


def _chain_and_ring(comm: P2PCommunicator):
    """Round trips over ``comm``'s pp group; returns what each method received."""
    me, prev, nxt = dist.get_rank(), comm.prev_rank, comm.next_rank
    first, last = comm.is_pp_first_stage, comm.is_pp_last_stage
    stage = comm.pp_group.rank()
    got = {}
    # Chain, forward then backward direction.
    x = comm.recv_forward(SHAPE, first)
    comm.send_forward(_value(me, 0), last)
    got["recv_forward"] = (x is None and first) or torch.equal(x, _value(prev, 0))
    got["recv_forward_requires_grad"] = x is None or x.requires_grad
    g = comm.recv_backward(SHAPE, last)
    comm.send_backward(_value(me, 1), first)
    got["recv_backward"] = (g is None and last) or (torch.equal(g, _value(nxt, 1)) and not g.requires_grad)
    # The combined 1F1B exchanges, between stage pairs (0,1), (2,3) and then (1,2).
    for pairs in ((0, 2), (1,)):
        if stage in pairs and not last:
            g = comm.send_forward_recv_backward(_value(me, 2), SHAPE, last)
            got.setdefault("send_forward_recv_backward", []).append(torch.equal(g, _value(nxt, 3)))
        elif stage - 1 in pairs:
            x = comm.send_backward_recv_forward(_value(me, 3), SHAPE, first)
            got.setdefault("send_backward_recv_forward", []).append(torch.equal(x, _value(prev, 2)))
    # The interleaved schedule's ring exchanges (they include the wrap-around link).
    x = comm.send_forward_recv_forward(_value(me, 4), True, SHAPE)
    got["send_forward_recv_forward"] = torch.equal(x, _value(prev, 4))
    g = comm.send_backward_recv_backward(_value(me, 5), True, SHAPE)
    got["send_backward_recv_backward"] = torch.equal(g, _value(nxt, 5))
    x, g = comm.send_forward_backward_recv_forward_backward(_value(me, 6), _value(me, 7), True, True, SHAPE)
    got["send_forward_backward_recv_forward_backward"] = torch.equal(x, _value(prev, 6)) and torch.equal(g, _value(nxt, 7))
    with torch.no_grad():
        x = comm.send_forward_recv_forward(_value(me, 8), True, SHAPE)
    got["no_grad_recv_has_no_grad"] = not x.requires_grad
    return got


def _p2p_checks(rank, world_size):
    out = {}
    ps.initialize_model_parallel(1, 4)
    for batched in (True, False):
        config = ModelParallelConfig(pipeline_model_parallel_size=4, batch_p2p_comm=batched)
        out[("pp4", batched)] = _chain_and_ring(P2PCommunicator(ps.get_pipeline_model_parallel_group(), config))
    bf16 = P2PCommunicator(ps.get_pipeline_model_parallel_group(),
                           ModelParallelConfig(pipeline_model_parallel_size=4, pipeline_dtype=torch.bfloat16))
    x = bf16.send_forward_recv_forward(_value(rank, 0).bfloat16(), True, SHAPE)
    out["bf16"] = x.dtype == torch.bfloat16 and torch.equal(x, _value(bf16.prev_rank, 0).bfloat16())
    with pytest.raises(ConfigError, match="pipeline_dtype"):
        bf16.send_forward(_value(rank, 0), False)  # float32 where bfloat16 travels: refused before sending
    with pytest.raises(NotSupportedError, match="variable_seq_lengths"):
        P2PCommunicator(ps.get_pipeline_model_parallel_group(), ModelParallelConfig(variable_seq_lengths=True))
    ps.destroy_model_parallel()

    # TP=2 x PP=2: two stages joined both ways, and the sequence-parallel shape, from a pg_collection.
    ps.initialize_model_parallel(2, 2)
    pg = ProcessGroupCollection.use_mpu_process_groups()
    config = TransformerConfig(num_layers=2, hidden_size=SHAPE[2], num_attention_heads=2, tensor_model_parallel_size=2,
                               pipeline_model_parallel_size=2, sequence_parallel=True)
    shapes = get_tensor_shapes(seq_length=12, micro_batch_size=2, decoder_seq_length=None, config=config,
                               tp_group=pg.tp, cp_group=pg.cp)
    out["sp_shape"] = shapes == [(6, 2, SHAPE[2])]
    with pytest.raises(ConfigError, match="--seq-length 13"):
        get_tensor_shapes(seq_length=13, micro_batch_size=2, decoder_seq_length=None, config=config,
                          tp_group=pg.tp, cp_group=pg.cp)
    for batched in (True, False):
        config.batch_p2p_comm = batched
        comm = P2PCommunicator(pg.pp, config)
        me, peer = dist.get_rank(), comm.next_rank
        act = torch.randn(shapes[0], generator=torch.Generator().manual_seed(me))
        grad = torch.randn(shapes[0], generator=torch.Generator().manual_seed(100 + me))
        x, g = comm.send_forward_backward_recv_forward_backward(act, grad, True, True, shapes[0])
        want_act = torch.randn(shapes[0], generator=torch.Generator().manual_seed(peer))
        want_grad = torch.randn(shapes[0], generator=torch.Generator().manual_seed(100 + peer))
        out[("tp2pp2", batched)] = (comm.prev_rank == peer and peer != me and torch.equal(x, want_act)
                                    and torch.equal(g, want_grad))
    ps.destroy_model_parallel()
    return out


def _flat(got, prefix=()):
    for key, value in got.items():
        if isinstance(value, dict):
            yield from _flat(value, prefix + (key,))
        else:
            yield prefix + (key,), value


METHODS = {"recv_forward", "recv_backward", "send_forward_recv_backward", "send_backward_recv_forward",
           "send_forward_recv_forward", "send_backward_recv_backward", "send_forward_backward_recv_forward_backward"}


def test_p2p_round_trips():
    checked = set()
    for rank, got in enumerate(run_distributed(_p2p_checks, 4)):
        for key, value in _flat(got):
            assert value is True or (isinstance(value, list) and value and all(value)), (rank, key, value)
            checked.add(key)
        assert {("pp4", True), ("pp4", False), ("tp2pp2", True), ("tp2pp2", False), "sp_shape", "bf16"} <= set(got)
    assert all((("pp4", batched), method) in checked for method in METHODS for batched in (True, False))


# ---- memory -------------------------------------------------------------------------------------
HIDDEN, SEQ, MBS, PP = 16, 8, 2, 4


class _Stage(torch.nn.Module):
    """A pipeline stage: tanh layers (tanh saves its output, the matmul its input), closed by a
    tanh or by a residual addition (which saves nothing)."""

    def __init__(self, config, first: bool, last_op: str):
        super().__init__()
        self.config, self.first, self.input_tensor, self.last_op = config, first, None, last_op
        g = torch.Generator().manual_seed(1 + ps.get_pipeline_model_parallel_rank())
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(HIDDEN, HIDDEN, generator=g) / HIDDEN ** 0.5) for _ in range(3))

    def set_input_tensor(self, input_tensor):
        self.input_tensor = input_tensor

    def forward(self, x):
        h = x if self.first else self.input_tensor
        for w in self.weights[:-1]:
            h = torch.tanh(h @ w)
        return torch.tanh(h @ self.weights[-1]) if self.last_op == "tanh" else h + h @ self.weights[-1]


class _Holder:
    """What autograd keeps for one saved tensor: alive exactly as long as autograd keeps it."""
    __slots__ = ("tensor", "__weakref__")


class SavedTensorMeter:
    """Bytes of the distinct storages autograd holds for backward (parameters excluded)."""

    def __init__(self, params):
        self.exclude = {p.untyped_storage().data_ptr() for p in params}
        self.saved = []  # (weak reference to the holder, storage address, bytes)
        self.samples = []

    def pack(self, tensor):
        holder = _Holder()
        holder.tensor = tensor
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.saved.append((weakref.ref(holder), storage.data_ptr(), storage.nbytes()))
        return holder

    @staticmethod
    def unpack(holder):
        return holder.tensor

    def sample(self):
        self.saved = [entry for entry in self.saved if entry[0]() is not None]
        self.samples.append(sum(dict((ptr, n) for _, ptr, n in self.saved).values()))

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def _micro_batches(m):
    g = torch.Generator().manual_seed(5)
    return [torch.randn(SEQ, MBS, HIDDEN, generator=g) for _ in range(m)]


def _forward_step(meter, outputs, alive=None):
    def forward_step(data_iterator, model):
        if alive is not None:  # earlier outputs still held by someone (the schedule, or autograd)
            alive.append(sum(ref() is not None for ref in outputs))
        output = model(next(data_iterator))
        meter.sample()  # right after a forward: as many micro-batches in flight as there will be
        outputs.append(weakref.ref(output))

        def loss_func(out):
            loss = out.pow(2).sum()
            return loss, torch.tensor(out.numel(), dtype=torch.int), {"loss": loss.detach()}
        return output, loss_func
    return forward_step


def _run_1f1b(model, m, deallocate=False):
    model.config.deallocate_pipeline_outputs = deallocate
    meter, alive = SavedTensorMeter(model.parameters()), []
    for w in model.weights:
        w.grad = None
    with meter.hooks():
        forward_backward_pipelining_without_interleaving(
            forward_step_func=_forward_step(meter, [], alive), data_iterator=iter(_micro_batches(m)), model=[model],
            num_microbatches=m, seq_length=SEQ, micro_batch_size=MBS, hooks=ScheduleHooks())
    return meter, max(alive), [w.grad.clone() for w in model.weights]


def _run_all_forwards_first(model, comm, m):
    """The control: every micro-batch forward (and sent on) before any backward."""
    meter = SavedTensorMeter(model.parameters())
    step, data, kept = _forward_step(meter, []), iter(_micro_batches(m)), []
    first, last, shape = comm.is_pp_first_stage, comm.is_pp_last_stage, (SEQ, MBS, HIDDEN)
    with meter.hooks():
        for _ in range(m):
            x = comm.recv_forward(shape, first)
            model.set_input_tensor(x)
            output, loss_func = step(data, model)
            comm.send_forward(output, last)
            kept.append((x, loss_func(output)[0] if last else output))
        for x, output in kept:
            torch.autograd.backward(output, comm.recv_backward(shape, last))
            comm.send_backward(None if first else x.grad, first)
    return meter


def _memory_checks(rank, world_size):
    ps.initialize_model_parallel(1, PP)
    stage = ps.get_pipeline_model_parallel_rank()
    config = TransformerConfig(num_layers=PP, hidden_size=HIDDEN, num_attention_heads=1,
                               pipeline_model_parallel_size=PP)
    out = {}
    for last_op in ("tanh", "add"):  # tanh saves its output for backward, an addition saves nothing
        model = _Stage(config, first=stage == 0, last_op=last_op)
        for m in (4, 12):
            meter, outputs_alive, grads = _run_1f1b(model, m)
            out[(last_op, "1f1b", m)] = (meter.samples[0], max(meter.samples), len(meter.samples), outputs_alive)
        meter, outputs_alive, dealloc_grads = _run_1f1b(model, 12, deallocate=True)
        out[(last_op, "dealloc")] = (all(torch.equal(a, b) for a, b in zip(grads, dealloc_grads)),
                                     max(meter.samples), outputs_alive)
    comm = P2PCommunicator(ps.get_pipeline_model_parallel_group(), config)
    for m in (4, 12):
        meter = _run_all_forwards_first(model, comm, m)
        out[("all_forwards_first", m)] = meter.samples
    ps.destroy_model_parallel()
    return out


def test_1f1b_holds_at_most_stages_in_flight_micro_batches():
    for stage, got in enumerate(run_distributed(_memory_checks, PP)):
        for last_op in ("tanh", "add"):
            one, peak4, n4, _ = got[(last_op, "1f1b", 4)]
            _, peak12, n12, alive = got[(last_op, "1f1b", 12)]
            assert one > 0 and (n4, n12) == (4, 12)
            # The bound is tight: stage r holds p - r micro-batches at its busiest, for M = 4 and 12 alike.
            assert peak4 == peak12 == (PP - stage) * one, (stage, last_op, one, peak4, peak12)
            # Deallocation: same gradients, same saved tensors; the sent outputs of the micro-batches
            # in flight are gone unless autograd saved them itself (tanh).
            same_grads, dealloc_peak, dealloc_alive = got[(last_op, "dealloc")]
            assert same_grads and dealloc_peak == peak12
            if stage < PP - 1:
                in_flight_before = PP - stage - 1
                assert alive == in_flight_before, (stage, last_op, alive)
                assert dealloc_alive == (0 if last_op == "add" else in_flight_before), (stage, last_op, dealloc_alive)
        # The control grows by (at least) a micro-batch's worth with every forward under the same meter
        # (on the last stage, by the loss's saved tensor more): a schedule that kept everything fails above.
        one, _, _, _ = got[("add", "1f1b", 4)]
        for m in (4, 12):
            samples = got[("all_forwards_first", m)]
            steps = {b - a for a, b in zip(samples, samples[1:])}
            assert samples[0] == one and len(steps) == 1 and steps.pop() >= one, (stage, m, samples)
            assert max(samples) >= m * one
