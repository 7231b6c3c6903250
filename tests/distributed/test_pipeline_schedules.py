"""Pipeline schedules match the single-process model: losses and every parameter's gradient.

Core-level, as test_tp_parity: GPTModel stages built from TransformerConfig directly (learned
absolute positions, untied embeddings), DistributedDataParallel per model chunk, finalize_model_grads,
and get_forward_backward_func's pick for the layout: 1F1B at PP=2 (x DP=2) and PP=4, interleaved at
PP=2 x VP=2 (micro-batch groups of 2 and of 4), 1F1B at TP=2 x PP=2 with sequence parallelism. One
4-rank spawn runs the reference (rank 0, before any layout exists) and every layout. Without
processes: the interleaved plan's exchanges, checked step by step for many layouts, the validity
rules, get_forward_backward_func and expected_bubble_fraction.
"""
from collections import Counter, defaultdict, deque

import pytest
import torch
import torch.distributed as dist

from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.errors import ConfigError
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.param_layout import param_layouts
from megatron.core.pipeline_parallel import ScheduleHooks
from megatron.core.pipeline_parallel.interleaved_plan import Unit, forward_order, interleaved_plan, num_warmup_forwards
from megatron.core.pipeline_parallel.schedules import (
    check_interleaved_schedule, expected_bubble_fraction, forward_backward_no_pipelining,
    forward_backward_pipelining_with_interleaving, forward_backward_pipelining_without_interleaving,
    get_forward_backward_func, get_schedule_table)
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed, set_param_init_seed
from megatron.core.transformer.transformer_config import TransformerConfig
from tests.harness import run_distributed

TRUE_VOCAB, SEQ, GBS, MBS, LAYERS = 100, 16, 16, 2, 4
# name -> (tp, pp, vp, sequence_parallel, extra config, pass pg_collection)
LAYOUTS = {
    "pp2_dp2": (1, 2, None, False, {}, False),
    "pp4": (1, 4, None, False, {"deallocate_pipeline_outputs": True}, True),
    "pp2_vp2_dp2": (1, 2, 2, False, {}, True),
    "pp2_vp2_dp2_group4": (1, 2, 2, False, {"microbatch_group_size_per_vp_stage": 4,
                                            "deallocate_pipeline_outputs": True}, False),
    "tp2_pp2_sp": (2, 2, None, True, {"batch_p2p_comm": False}, False),
}


def _batch():
    return torch.randint(0, TRUE_VOCAB, (GBS, SEQ + 1), generator=torch.Generator().manual_seed(7))


def forward_step(data_iterator, model):
    tokens = next(data_iterator)
    out = model(tokens[:, :-1], None, None, labels=tokens[:, 1:])

    def loss_func(losses):
        loss = losses.sum()
        return loss, torch.tensor(losses.numel(), dtype=torch.int), {"lm loss": torch.stack([loss, loss.new_tensor(
            float(losses.numel()))]).detach()}
    return out, loss_func


class _PackCounter:
    """How many tensors autograd saves for backward while active (0: no graph is built)."""

    def __init__(self):
        self.count = 0

    def pack(self, tensor):
        self.count += 1
        return tensor

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def _build(tp, pp, vp, sp, extra):
    model_parallel_cuda_manual_seed(1234)
    set_param_init_seed(1234)
    config = TransformerConfig(num_layers=LAYERS, hidden_size=32, num_attention_heads=4, hidden_dropout=0.0,
                               attention_dropout=0.0, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                               virtual_pipeline_model_parallel_size=vp, sequence_parallel=sp, **extra)
    chunks = []
    for vp_stage in (range(vp) if vp else [None]):
        model = GPTModel(config, get_gpt_layer_local_spec(), vocab_size=-(-TRUE_VOCAB // (8 * tp)) * 8 * tp,
                         max_sequence_length=SEQ, true_vocab_size=TRUE_VOCAB,
                         position_embedding_type="learned_absolute", share_embeddings_and_output_weights=False,
                         pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
                         post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
                         vp_stage=vp_stage)
        chunks.append(DistributedDataParallel(config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model))
    return chunks


def _full_grads(chunks):
    """Every gradient of this rank's chunks, whole over TP, by global parameter name."""
    group, tp = ps.get_tensor_model_parallel_group(check_initialized=False), ps.get_tensor_model_parallel_world_size()
    out = {}
    for chunk in chunks:
        model = chunk.module
        layouts = param_layouts(model)
        for name, p in model.named_parameters():
            shards = [torch.empty_like(p.main_grad) for _ in range(tp)]
            if tp > 1:
                dist.all_gather(shards, p.main_grad.contiguous(), group=group)
            else:
                shards = [p.main_grad]
            out[model.global_param_name(name)] = layouts[name].full_from_shards(shards).clone()
    return out


def _step(chunks, vp, pg_collection, forward_only=False, num_microbatches=None):
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    micro = [c[dp_rank * MBS:(dp_rank + 1) * MBS] for c in _batch().split(MBS * dp)]
    data = [iter(micro) for _ in range(vp)] if vp else iter(micro)
    for chunk in chunks:
        chunk.zero_grad_buffer()
    return get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=data, model=chunks,
        num_microbatches=num_microbatches or len(micro), seq_length=SEQ, micro_batch_size=MBS,
        forward_only=forward_only, pg_collection=pg_collection,
        hooks=ScheduleHooks(finalize_grads=finalize_model_grads))


def _run(tp, pp, vp, sp, extra, with_pg):
    chunks = _build(tp, pp, vp, sp, extra)
    pg = ProcessGroupCollection.use_mpu_process_groups() if with_pg else None
    store = _step(chunks, vp, pg)
    losses = [d["lm loss"].tolist() for d in store]
    grads = _full_grads(chunks)
    with _PackCounter() as packs:
        eval_store = _step(chunks, vp, pg, forward_only=True)
    untouched = all(not p.main_grad.any() for chunk in chunks for p in chunk.module.parameters())
    eval_losses = [d["lm loss"].tolist() for d in eval_store]
    keep = ps.get_data_parallel_rank() == 0 and ps.get_tensor_model_parallel_rank() == 0
    out = {"losses": losses, "eval_losses": eval_losses, "eval_packs": packs.count, "eval_untouched": untouched,
           "grads": grads if keep else {}, "last": ps.is_pipeline_last_stage()}
    if tp == 1 and pp == 2 and not extra:  # the hooks, under 1F1B and under interleaving
        events, hook_grads, m = _hook_events(chunks, vp)
        # Per-token loss sums over tokens (no 1/(M n) of the mean), and the loss is scaled by 4.
        scale = 4 * m * SEQ * MBS
        out["hooks"] = (events, m, all(_close(hook_grads[k], scale * grads[k], 1e-6) for k in grads))
    return out


def _hook_events(chunks, vp):
    """One step with recording hooks (and per-token loss on): what the schedule called, in order."""
    events, state = [], {"suspended": False, "seen": defaultdict(int)}
    chunk_of = {id(p): i for i, chunk in enumerate(chunks) for p in chunk.parameters()}

    class NoSync:
        def __enter__(self):
            events.append(("suspend",))
            state["suspended"] = True

        def __exit__(self, *exc):
            events.append(("resume",))
            state["suspended"] = False

    def recording_step(data_iterator, model):
        c = model.module.vp_stage or 0
        mb = state["seen"][c]
        state["seen"][c] += 1
        events.append(("forward", c, mb))
        out, loss_func = forward_step(data_iterator, model)
        out.register_hook(lambda grad: events.append(("backward", c, mb, state["suspended"])))
        return out, loss_func

    def chunk_params(kind):
        return lambda params: events.append((kind, sorted({chunk_of[id(p)] for p in params})))

    def finalize(model, num_tokens):
        events.append(("finalize", len(model), int(num_tokens)))
        finalize_model_grads(model)  # the data-parallel average, as in the plain step (no division by tokens)

    hooks = ScheduleHooks(scale_loss=lambda loss: loss * 4, no_sync=NoSync, grad_sync=chunk_params("grad_sync"),
                          param_sync=chunk_params("param_sync"), finalize_grads=finalize)
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    micro = [c[dp_rank * MBS:(dp_rank + 1) * MBS] for c in _batch().split(MBS * dp)]
    for chunk in chunks:
        chunk.zero_grad_buffer()
    chunks[0].config.calculate_per_token_loss = True
    try:
        get_forward_backward_func()(forward_step_func=recording_step,
                                    data_iterator=[iter(micro) for _ in range(vp)] if vp else iter(micro),
                                    model=chunks, num_microbatches=len(micro), seq_length=SEQ, micro_batch_size=MBS,
                                    hooks=hooks)
    finally:
        chunks[0].config.calculate_per_token_loss = False
    return events, _full_grads(chunks), len(micro)


def _schedule_rule_errors(chunks, vp):
    """The interleaved schedule refuses bad micro-batch counts before communicating (on every rank)."""
    messages = []
    for m in (3, 1):  # 3 mod 2 leaves a last group of 1 < PP; 1 micro-batch is fewer than a group
        with pytest.raises(ConfigError) as info:
            _step(chunks, vp, None, num_microbatches=m)
        messages.append(str(info.value))
    return messages


def _all(rank, world_size):
    out = {}
    if rank == 0:  # the reference: one process, no layout yet (every group is this rank alone)
        chunks = _build(1, 1, None, False, {})
        store = _step(chunks, None, None)
        out["reference"] = {"losses": [d["lm loss"].tolist() for d in store], "grads": _full_grads(chunks)}
    for name, (tp, pp, vp, sp, extra, with_pg) in LAYOUTS.items():
        ps.initialize_model_parallel(tp, pp, virtual_pipeline_model_parallel_size=vp)
        out[name] = _run(tp, pp, vp, sp, extra, with_pg)
        if name == "pp2_vp2_dp2":
            out["rule_errors"] = _schedule_rule_errors(_build(tp, pp, vp, sp, extra), vp)
        ps.destroy_model_parallel()
    return out


def _close(a, b, tol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm().clamp(min=1e-12)) <= tol


def _mean_loss(per_rank_losses):
    total = torch.tensor([loss for losses in per_rank_losses for loss in losses], dtype=torch.float64).sum(0)
    return float(total[0] / total[1])


def test_pipeline_schedules_match_single_process():
    results = run_distributed(_all, 4)
    ref = results[0]["reference"]
    ref_mean = _mean_loss([ref["losses"]])
    for name in LAYOUTS:
        per_rank = [r[name] for r in results]
        last = [r for r in per_rank if r["last"]]
        assert all(not r["losses"] and not r["eval_losses"] for r in per_rank if not r["last"]), name
        assert _close(_mean_loss([r["losses"] for r in last]), ref_mean), (name, ref_mean)
        if len(last) == 1:  # one data-parallel rank: the same micro-batches, in the same order
            assert _close(last[0]["losses"], ref["losses"]), name
        # Forward only: the same losses, no graph, no gradient.
        for r in last:
            assert _close(r["eval_losses"], r["losses"], tol=1e-6), name
        assert all(r["eval_packs"] == 0 and r["eval_untouched"] for r in per_rank), name
        grads = {}
        for r in per_rank:
            assert not set(grads) & set(r["grads"]), (name, "a parameter on two stages")
            grads.update(r["grads"])
        assert set(grads) == set(ref["grads"]), (name, set(grads) ^ set(ref["grads"]))
        for param, grad in grads.items():
            assert grad.abs().sum() > 0 and _close(grad, ref["grads"][param]), (name, param)
    for name in ("pp2_dp2", "pp2_vp2_dp2"):
        for r in results:
            _check_hook_events(name, *r[name]["hooks"], last=r[name]["last"], chunks=2 if "vp2" in name else 1)
    for message in results[0]["rule_errors"]:
        assert "--microbatch-group-size-per-virtual-pipeline-stage" in message and "--global-batch-size" in message
        assert "--pipeline-model-parallel-size 2" in message


def _check_hook_events(name, events, m, scaled_grads_ok, last, chunks):
    assert scaled_grads_ok, (name, "scale_loss multiplies every gradient")
    backwards = [e for e in events if e[0] == "backward"]
    assert len(backwards) == m * chunks, (name, backwards)
    for c in range(chunks):
        mine = [e for e in backwards if e[1] == c]
        # In micro-batch order; no_sync held for all but the chunk's last backward.
        assert [e[2] for e in mine] == list(range(m)) and [e[3] for e in mine] == [True] * (m - 1) + [False], name
        done = events.index(mine[-1])
        assert events.index(("grad_sync", [c])) > done, (name, "grad_sync after the chunk's last backward")
        if chunks > 1:
            assert events.index(("param_sync", [c])) < events.index(("forward", c, 0)), name
    assert ("param_sync", [0]) not in events or chunks > 1, (name, "1F1B does not call param_sync")
    # finalize_grads last, once, with every chunk and this stage's token count (0 without the loss).
    assert events[-1] == ("finalize", chunks, m * SEQ * MBS if last else 0), (name, events[-1])
    assert [e[0] for e in events].count("finalize") == 1 and events[-2] == ("grad_sync", [0]), name


# ---- without processes -------------------------------------------------------------------------
def _simulate(p, m, v, g, forward_only=False):
    """Run every rank's plan step by step: each send meets the receive of the neighbour's slot of
    the same step, every input and gradient arrived in an earlier step (in micro-batch order per
    chunk), every unit runs once forward and once backward, and no more than W_r + 1 units are in
    flight. Returns each rank's peak in flight."""
    plans = {r: interleaved_plan(p, r, m, v, g, forward_only) for r in range(p)}
    steps = defaultdict(dict)
    for r, slots in plans.items():
        for s in slots:
            steps[s.index + r][r] = s
    arrived = defaultdict(deque)  # (rank, "act"/"grad", chunk) -> units, in order of arrival
    in_flight, peak, done = defaultdict(set), defaultdict(int), defaultdict(list)
    for t in sorted(steps):
        for r, s in steps[t].items():  # compute, with what arrived in earlier steps
            if s.forward:
                if not (r == 0 and s.forward.chunk == 0):
                    assert arrived[(r, "act", s.forward.chunk)].popleft() == s.forward
                in_flight[r].add(s.forward)
                peak[r] = max(peak[r], len(in_flight[r]))
                done[r].append(("F", s.forward))
                if forward_only:
                    in_flight[r].discard(s.forward)
            if s.backward:
                assert s.backward in in_flight[r]
                if not (r == p - 1 and s.backward.chunk == v - 1):
                    assert arrived[(r, "grad", s.backward.chunk)].popleft() == s.backward
                in_flight[r].discard(s.backward)
                done[r].append(("B", s.backward))
        for r, s in steps[t].items():  # then exchange
            nxt, prev = (r + 1) % p, (r - 1) % p
            assert (s.recv_prev is not None) == bool(prev in steps[t] and steps[t][prev].send_next)
            assert (s.recv_next is not None) == bool(nxt in steps[t] and steps[t][nxt].send_prev)
            if s.send_next:
                unit = Unit(s.forward.microbatch, s.forward.chunk + (1 if r == p - 1 else 0))
                assert steps[t][nxt].recv_prev == unit.chunk
                arrived[(nxt, "act", unit.chunk)].append(unit)
            if s.send_prev:
                unit = Unit(s.backward.microbatch, s.backward.chunk - (1 if r == 0 else 0))
                assert steps[t][prev].recv_next == unit.chunk
                arrived[(prev, "grad", unit.chunk)].append(unit)
    for r in range(p):
        every_unit = Counter(forward_order(m, v, g))
        assert Counter(u for kind, u in done[r] if kind == "F") == every_unit
        assert forward_only or Counter(u for kind, u in done[r] if kind == "B") == every_unit
        assert not forward_only or not any(kind == "B" for kind, _ in done[r])
    assert not any(arrived.values())
    return dict(peak)


def test_interleaved_plan_exchanges_meet_and_arrive_in_time():
    checked = 0
    for p in (2, 3, 4):
        for v in (1, 2, 3):
            for m in range(p, 10):
                for g in range(p, m + 1):
                    if 0 < m % g < p:
                        continue
                    for forward_only in (False, True):
                        peak = _simulate(p, m, v, g, forward_only)
                        if not forward_only:
                            assert all(peak[r] <= num_warmup_forwards(p, r, v, g) + 1 for r in range(p))
                        checked += 1
    assert checked == 276  # the loops above really ran
    # Megatron's documented order for PP=2, M=5, groups of 3, VP=2.
    order = forward_order(5, 2, 3)
    assert [u.microbatch for u in order] == [0, 1, 2, 0, 1, 2, 3, 4, 3, 4]
    assert [u.chunk for u in order] == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert get_schedule_table(5, 2, 3) == [(u.microbatch, u.chunk) for u in order]
    # A last group shorter than PP cannot keep the ring fed: the plan would need a tensor not yet sent.
    with pytest.raises((AssertionError, IndexError)):
        _simulate(4, 5, 2, 4)


def test_interleaved_validity_rules_name_the_flags():
    config = TransformerConfig(num_layers=8, hidden_size=8, num_attention_heads=2, pipeline_model_parallel_size=4,
                               virtual_pipeline_model_parallel_size=2)
    assert config.microbatch_group_size_per_vp_stage == 4  # Megatron's default: the pipeline size
    for m, g in ((4, 4), (8, 4), (12, 4), (9, 5), (6, 6)):
        check_interleaved_schedule(config, 4, 2, m, g)
    cases = [((6, 4), "last group of micro-batches would hold 2"), ((2, 4), "must lie in [--pipeline-model"),
             ((8, 3), "must lie in"), ((7, 5), "would hold 2")]
    for (m, g), text in cases:
        with pytest.raises(ConfigError, match=r"(?s)" + text.replace("[", r"\[") + ".*--global-batch-size"):
            check_interleaved_schedule(config, 4, 2, m, g)
    with pytest.raises(ConfigError, match="one model chunk per virtual stage.*--num-layers-per-virtual-pipeline-stage"):
        check_interleaved_schedule(config, 4, 3, 8, 4)
    with pytest.raises(ConfigError, match="--pipeline-model-parallel-size > 1"):
        check_interleaved_schedule(config, 1, 2, 8, 4)
    overlap = TransformerConfig(num_layers=4, hidden_size=8, num_attention_heads=2, overlap_p2p_comm=True)
    with pytest.raises(ConfigError, match="overlap_p2p_comm and config.batch_p2p_comm"):
        check_interleaved_schedule(overlap, 4, 2, 8, 4)


def test_schedule_choice_and_bubble_fraction():
    assert get_forward_backward_func(1, None) is forward_backward_no_pipelining
    assert get_forward_backward_func(4, None) is forward_backward_pipelining_without_interleaving
    assert get_forward_backward_func(4, 2) is forward_backward_pipelining_with_interleaving
    assert expected_bubble_fraction(1, 8) == 0.0
    assert expected_bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert expected_bubble_fraction(4, 8, 2) == pytest.approx(3 / 19)
    assert expected_bubble_fraction(2, 1) == pytest.approx(1 / 2)
    with pytest.raises(ConfigError):
        expected_bubble_fraction(4, 0)
