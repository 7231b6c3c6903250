"""Megatron Core's public names that users' code reaches, importable and behaving as in 0.15/0.16,
and the schedules' hooks (ScheduleHooks, with the model config's fields as the fallback)."""
import contextlib

import pytest
import torch

from megatron.core.transformer.module import Float16Module, MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


def _config(**kw):
    return TransformerConfig(num_layers=1, hidden_size=8, num_attention_heads=2, **kw)


def test_import_paths_and_small_helpers():
    import megatron.core.model_parallel_config as mpc
    from megatron.core import ModelParallelConfig
    from megatron.core.models.common.embeddings import apply_rotary_pos_emb
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec, get_gpt_layer_local_submodules
    from megatron.core.transformer.transformer_layer import TransformerLayerSubmodules
    from megatron.core.transformer.utils import attention_mask_func, erf_gelu, get_linear_layer, openai_gelu
    from megatron.core.utils import is_te_min_version

    assert mpc.ModelParallelConfig is ModelParallelConfig and issubclass(TransformerConfig, ModelParallelConfig)
    assert GPTModel.__module__ == "megatron.core.models.gpt.gpt_model"
    assert is_te_min_version("1.0") is False
    subs = get_gpt_layer_local_submodules(normalization="RMSNorm")
    assert isinstance(subs, TransformerLayerSubmodules)
    assert get_gpt_layer_local_spec().submodules.mlp.module is subs.mlp.module

    t = torch.randn(4, 1, 2, 8)
    assert torch.equal(apply_rotary_pos_emb(t, torch.zeros(4, 1, 1, 8), config=_config()), t)  # angle 0
    x = torch.linspace(-3, 3, 7)
    assert torch.allclose(erf_gelu(x), torch.nn.functional.gelu(x), atol=1e-4)
    assert torch.allclose(openai_gelu(x), torch.nn.functional.gelu(x, approximate="tanh"))
    scores = attention_mask_func(torch.zeros(2, 2), torch.tensor([[False, True], [False, False]]))
    assert scores[0, 1] == -10000.0 and scores[1, 1] == 0
    layer = get_linear_layer(3, 5, torch.nn.init.ones_)
    assert torch.equal(layer.weight, torch.ones(5, 3)) and torch.count_nonzero(layer.bias) == 0


def test_tensor_parallel_functions_on_one_rank():
    from megatron.core.tensor_parallel import (
        gather_split_1d_tensor,
        linear_with_grad_accumulation_and_async_allreduce,
        split_tensor_into_1d_equal_chunks,
    )
    x, w, b = torch.randn(3, 2, 4), torch.randn(5, 4), torch.randn(5)
    out = linear_with_grad_accumulation_and_async_allreduce(x, w, b, gradient_accumulation_fusion=False,
                                                            allreduce_dgrad=True, sequence_parallel=False)
    assert torch.allclose(out, x @ w.T + b)
    t = torch.arange(6.0).view(2, 3)
    assert torch.equal(gather_split_1d_tensor(split_tensor_into_1d_equal_chunks(t)), t.view(-1))


def test_parallel_state_api_without_a_world():
    from megatron.core import parallel_state as ps
    gen = ps.RankGenerator(tp=2, ep=1, dp=2, pp=2, cp=1, order="tp-pp-dp")
    assert gen.get_ranks("pp") == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert gen.get_ranks("dp") == [[0, 4], [1, 5], [2, 6], [3, 7]]
    # Orders with or without cp/ep: a dimension left out has size 1 (same groups as megatron-core 0.16.1).
    for order in ("tp-dp-pp", "tp-cp-ep-dp-pp"):
        assert ps.RankGenerator(tp=2, ep=1, dp=2, pp=2, cp=1, order=order).get_ranks("dp") == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert ps.RankGenerator(tp=2, ep=1, dp=2, pp=2, cp=1, order="tp-cp-ep-pp-dp").get_ranks("tp-pp") == \
        [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="leaves out 'cp'"):
        ps.RankGenerator(tp=1, ep=1, dp=1, pp=1, cp=2, order="tp-dp-pp")
    try:
        ps.set_tensor_model_parallel_world_size(4)
        ps.set_pipeline_model_parallel_rank(1)
        assert ps.get_tensor_model_parallel_world_size() == 4 and ps.get_pipeline_model_parallel_rank() == 1
        ps.set_pipeline_model_parallel_world_size(2)
        assert ps.is_pipeline_last_stage() and not ps.is_pipeline_first_stage()
        ps.set_virtual_pipeline_model_parallel_world_size(2)
        assert ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=1)
        assert not ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=0)
        with pytest.raises(ValueError, match="vp_stage"):
            ps.is_pipeline_first_stage(ignore_virtual=False)
    finally:
        ps.destroy_model_parallel()
    assert ps.get_tensor_model_parallel_world_size() == 1


def test_num_microbatches_calculator_signatures():
    from megatron.core import num_microbatches_calculator as nmc
    try:
        nmc.init_num_microbatches_calculator(0, global_batch_size=16, micro_batch_size=2, data_parallel_size=2)
        assert nmc.get_num_microbatches() == 4
        nmc.reconfigure_num_microbatches_calculator(0, None, 16, 1, 2)
        assert nmc.get_num_microbatches() == 8
        with pytest.raises(TypeError, match="micro_batch_size"):
            nmc.reconfigure_num_microbatches_calculator(0, global_batch_size=16, data_parallel_size=2)
    finally:
        nmc.destroy_num_microbatches_calculator()


class _Recorder(MegatronModule):
    def __init__(self, config):
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.ones(()))
        self.pre_process = self.post_process = True
        self.seen = []

    def forward(self, x):
        self.seen.append(x.dtype)
        return x * self.w


def test_float16_module_casts_fp32_inputs_on_the_first_stage():
    module = Float16Module(_config(bf16=True), _Recorder(_config()))
    out = module(torch.ones(3))
    assert module.module.seen == [torch.bfloat16] and out.dtype == torch.float32
    module.module.pre_process = False
    module(torch.ones(3))
    assert module.module.seen[-1] == torch.float32


def _schedule_run(hooks=None, config=None, loss_tuple=3, micro=2):
    from megatron.core.pipeline_parallel import get_forward_backward_func
    model = _Recorder(config or _config())
    data = iter([torch.full((4,), float(i + 1)) for i in range(micro)])

    def forward_step(data_iterator, model):
        out = model(next(data_iterator))
        if loss_tuple == 3:
            return out, lambda o: (o.sum(), torch.tensor(o.numel(), dtype=torch.int), {"loss": o.sum().detach()})
        return out, lambda o: (o.mean(), {"loss": o.mean().detach()})

    store = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=data, model=[model],
                                        num_microbatches=micro, seq_length=4, micro_batch_size=1, hooks=hooks)
    return model, store


def test_schedule_hooks_and_the_config_fallback():
    from megatron.core.pipeline_parallel import ScheduleHooks
    calls = []

    @contextlib.contextmanager
    def no_sync():
        calls.append("no_sync")
        yield

    hooks = ScheduleHooks(scale_loss=lambda loss: loss * 8, no_sync=no_sync,
                          finalize_grads=lambda chunks, num_tokens: calls.append(("finalize", len(chunks), num_tokens)))
    model, store = _schedule_run(hooks)
    # Loss normalisation: per micro-batch token mean, averaged over the 2 micro-batches: d/dw = mean(1, 2).
    assert float(model.w.grad) == pytest.approx(8 * 1.5)
    assert calls == ["no_sync", ("finalize", 1, None)] and len(store) == 2

    # Megatron-style callers keep the hooks on the config; given hooks win over it.
    config = _config()
    config.grad_scale_func = lambda loss: loss * 2
    config.finalize_model_grads_func = lambda chunks, num_tokens: calls.append("config finalize")
    model, _ = _schedule_run(config=config)
    assert float(model.w.grad) == pytest.approx(2 * 1.5) and calls[-1] == "config finalize"
    model, _ = _schedule_run(ScheduleHooks(), config=config)
    assert float(model.w.grad) == pytest.approx(1.5) and calls[-1] == "config finalize" and len(calls) == 3

    # Legacy 2-tuple loss: the micro-batch mean, divided by the number of micro-batches.
    model, _ = _schedule_run(ScheduleHooks(), loss_tuple=2)
    assert float(model.w.grad) == pytest.approx(1.5)
    # Per-token loss: sums, and finalize gets the token count.
    got = []
    model, _ = _schedule_run(ScheduleHooks(finalize_grads=lambda chunks, n: got.append(int(n))),
                             config=_config(calculate_per_token_loss=True))
    assert float(model.w.grad) == pytest.approx(4 * 1 + 4 * 2) and got == [8]


def test_distribute_saved_activations_is_refused_with_sequence_parallel():
    shape = dict(num_layers=2, hidden_size=32, num_attention_heads=4, tensor_model_parallel_size=2,
                 recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    TransformerConfig(**shape, distribute_saved_activations=True)  # accepted without sequence parallelism
    with pytest.raises(ValueError, match="distribute_saved_activations must be False with sequence_parallel"):
        TransformerConfig(**shape, distribute_saved_activations=True, sequence_parallel=True)
