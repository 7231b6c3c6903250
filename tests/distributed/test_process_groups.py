"""Explicit process groups: layouts from any order string, the DeviceMesh, and two models over two
different ProcessGroupCollections in one world, each matching the single-process model.

One 4-rank spawn runs every check (process starts are the expensive part).
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F

from megatron.core import device
from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.param_layout import ParamLayout, param_layouts, record_param_layout
from megatron.core.pipeline_parallel import ScheduleHooks, get_forward_backward_func
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.transformer_config import TransformerConfig
from tests.distributed.test_parallel_state import _layout_checks, check_groups_on_four_ranks
from tests.harness import run_distributed

TRUE_VOCAB, SEQ, GBS, MBS, STEPS = 100, 8, 4, 1, 2
LLAMA = dict(model=dict(position_embedding_type="rope", share_embeddings_and_output_weights=False),
             config=dict(normalization="RMSNorm", gated_linear_unit=True, activation_func=F.silu,
                         add_bias_linear=False, num_attention_heads=8, num_query_groups=4, ffn_hidden_size=40))


def _collection(tp_group, dp_group) -> ProcessGroupCollection:
    """A dense, pipeline-free collection from a tensor- and a data-parallel group (None: this rank alone)."""
    return ProcessGroupCollection(tp=tp_group, pp=None, mp=tp_group, cp=None, tp_cp=tp_group, embd=None,
                                  pos_embd=None, dp=dp_group, dp_cp=dp_group, expt_dp=dp_group, expt_tp=tp_group)


def _train(pg: ProcessGroupCollection):
    """A few steps of a Llama-style model over ``pg``; losses, grad norms, full gradients of step 1."""
    tp = pg.tp.size() if pg.tp is not None else 1
    dp, dp_rank = (pg.dp_cp.size(), pg.dp_cp.rank()) if pg.dp_cp is not None else (1, 0)
    config = TransformerConfig(num_layers=2, hidden_size=32, hidden_dropout=0.0, attention_dropout=0.0,
                               tensor_model_parallel_size=tp, **LLAMA["config"])
    model = GPTModel(config, get_gpt_layer_local_spec(), vocab_size=-(-TRUE_VOCAB // (8 * tp)) * 8 * tp,
                     max_sequence_length=SEQ, true_vocab_size=TRUE_VOCAB, pg_collection=pg, **LLAMA["model"])
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model,
                                  pg_collection=pg)
    optimizer = get_megatron_optimizer(OptimizerConfig(lr=1e-2, clip_grad=0.05), [ddp], pg_collection=pg)
    hooks = ScheduleHooks(finalize_grads=finalize_model_grads)
    g = torch.Generator().manual_seed(7)
    losses, norms, grads = [], [], None
    for step in range(STEPS):
        batch = torch.randint(0, TRUE_VOCAB, (GBS, SEQ + 1), generator=g)
        micro = iter([c[dp_rank * MBS:(dp_rank + 1) * MBS] for c in batch.split(MBS * dp)])

        def forward_step(data_iterator, model):
            tokens = next(data_iterator).to(device.current_device())
            out = model(tokens[:, :-1], None, None, labels=tokens[:, 1:])
            return out, lambda o: (o.sum(), torch.tensor(o.numel(), dtype=torch.int),
                                   {"lm loss": torch.stack([o.sum().detach(), o.new_tensor(float(o.numel()))])})

        ddp.zero_grad_buffer()
        optimizer.zero_grad()
        out = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=micro, model=[ddp],
                                          num_microbatches=GBS // (MBS * dp), seq_length=SEQ, micro_batch_size=MBS,
                                          pg_collection=pg, hooks=hooks)
        total = torch.stack([d["lm loss"] for d in out]).sum(0)
        if dp > 1:
            dist.all_reduce(total, group=pg.dp_cp)
        losses.append(float(total[0] / total[1]))
        if step == 0:
            layouts = param_layouts(model)
            grads = {}
            for name, p in model.named_parameters():
                shards = [torch.empty_like(p.main_grad) for _ in range(tp)]
                if tp > 1:
                    dist.all_gather(shards, p.main_grad.contiguous(), group=pg.tp)
                else:
                    shards = [p.main_grad]
                grads[name] = layouts[name].full_from_shards(shards).cpu().clone()
        ok, norm, _ = optimizer.step()
        assert ok
        norms.append(norm)
    return model, losses, norms, grads


def _layouts_and_mesh(rank):
    out = {}
    for order in ("tp-cp-ep-dp-pp", "tp-pp-dp"):  # other order strings: tests/unit/test_megatron_core_api.py
        layout = ps.initialize_model_parallel(1, 2, order=order)
        mesh = ps.get_device_mesh()
        out[order] = {dim: (layout.ranks(dim), dist.get_process_group_ranks(mesh[dim].get_group()))
                      for dim in ("tp", "cp", "dp", "pp")}
        ps.destroy_model_parallel()
    gen = ps.RankGenerator(tp=2, ep=1, dp=2, pp=1, cp=1, order="tp-dp-pp")
    out["generator"] = gen.get_ranks("dp")
    return out


def _ddp_reduces_over_the_records_group(rank):
    """A dense parameter is averaged over dp_cp (all 4 ranks), an 'expert' one over expt_dp (pairs)."""
    pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    pg = ProcessGroupCollection(tp=None, dp_cp=dist.group.WORLD, expt_dp=pairs[rank // 2])
    module = torch.nn.Module()
    module.dense = torch.nn.Parameter(torch.zeros(3, device=device.current_device()))
    module.expert = torch.nn.Parameter(torch.zeros(3, device=device.current_device()))
    record_param_layout(module, "expert", ParamLayout(full_shape=(3,), grad_reduce_group="expt_dp"))
    config = TransformerConfig(num_layers=1, hidden_size=4, num_attention_heads=1)
    ddp = DistributedDataParallel(config, DistributedDataParallelConfig(), module, pg_collection=pg)
    (module.dense.sum() * rank + module.expert.sum() * rank).backward()
    ddp.finish_grad_sync()
    return float(module.dense.main_grad[0]), float(module.expert.main_grad[0]), sorted(b.group_name for b in ddp.buffers)


def _two_models(rank, world_size):
    results = {"layouts": _layouts_and_mesh(rank), "ddp_groups": _ddp_reduces_over_the_records_group(rank),
               "older_layout_checks": _layout_checks(rank, world_size)}
    ps.initialize_model_parallel(1)  # the global layout: TP 1, DP 4 (model Y uses it)
    # Model X: TP groups {0,1} and {2,3}, DP groups {0,2} and {1,3}; every rank creates every group.
    tp_groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    dp_groups = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    pg_x = _collection(tp_groups[rank // 2], dp_groups[rank % 2])
    model_x, *run_x = _train(pg_x)
    model_y, *run_y = _train(ProcessGroupCollection.use_mpu_process_groups())
    # One rank alone: the single-process model (rank 0 computes it for everyone).
    reference = _train(_collection(None, None))[1:] if rank == 0 else None
    qkv = "decoder.layers.0.self_attention.linear_qkv.weight"
    results["shapes"] = (dict(model_x.named_parameters())[qkv].shape[0], dict(model_y.named_parameters())[qkv].shape[0])
    results["x_uses_own_tp"] = all(m.tp_group is pg_x.tp for m in model_x.modules() if hasattr(m, "tp_group"))
    results["runs"] = (run_x, run_y, reference)
    return results


def _close(a, b, tol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm().clamp(min=1e-12)) <= tol


def test_layouts_mesh_and_two_models_over_their_own_groups():
    results = run_distributed(_two_models, 4)
    reference = results[0]["runs"][2]
    check_groups_on_four_ranks([r["older_layout_checks"] for r in results])
    r0 = results[0]["layouts"]
    # tp=1, pp=2, dp=2 on 4 ranks: pp outermost by default, dp outermost with "tp-pp-dp".
    assert r0["tp-cp-ep-dp-pp"]["pp"][0] == [0, 2] and r0["tp-cp-ep-dp-pp"]["dp"][0] == [0, 1]
    assert r0["tp-pp-dp"]["pp"][0] == [0, 1] and r0["tp-pp-dp"]["dp"][0] == [0, 2]
    for res in results:
        for order, dims in res["layouts"].items():
            if order != "generator":
                for dim, (layout_ranks, mesh_ranks) in dims.items():
                    assert layout_ranks == mesh_ranks, (order, dim)
    assert r0["generator"] == [[0, 2], [1, 3]]

    # DDP: dense mean over 4 ranks (0+1+2+3)/4, expert mean over its pair.
    assert [r["ddp_groups"] for r in results] == [(1.5, 0.5, ["dp_cp", "expt_dp"])] * 2 + \
        [(1.5, 2.5, ["dp_cp", "expt_dp"])] * 2

    for res in results:
        assert res["shapes"] == ((32 + 2 * 4 * 4) // 2, 32 + 2 * 4 * 4)  # model X splits QKV over its TP group
        assert res["x_uses_own_tp"]
        run_x, run_y, _ = res["runs"]
        for run in (run_x, run_y):
            for got, want in zip(run[:2], reference[:2]):
                assert _close(got, want), (got, want)
            assert set(run[2]) == set(reference[2])
            for name in run[2]:
                assert _close(run[2][name], reference[2][name]), name
