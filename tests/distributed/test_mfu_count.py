"""The MFU parameter count N of BENCHMARKS.md: all trainable parameters except the input embedding
(the output layer counts), on the real GPTModel; S2's formula gives flops_per_token = 6N + 12Lhs."""
from tests.harness import run_distributed


def _count(rank, world_size):
    import torch.nn.functional as F

    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.models.gpt.gpt_model import GPTModel
    from megatron.core.transformer.transformer_config import TransformerConfig
    from megatron.training.throughput import count_params_for_mfu
    ps.initialize_model_parallel(1, 1)
    h, f, layers, v = 64, 176, 3, 512
    out = {}
    for tied in (False, True):
        config = TransformerConfig(num_layers=layers, hidden_size=h, num_attention_heads=4, ffn_hidden_size=f,
                                   gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False,
                                   normalization="RMSNorm")
        model = GPTModel(config, get_gpt_layer_local_spec(), vocab_size=v, max_sequence_length=32,
                         position_embedding_type="rope", share_embeddings_and_output_weights=tied)
        out[tied] = count_params_for_mfu(model)
    # BENCHMARKS.md's accounting: per layer q,k,v,o + gate,up,down + 2 norms; final norm; lm head.
    expected = layers * (4 * h * h + 3 * h * f + 2 * h) + h + v * h
    return out, expected


def test_mfu_parameter_count_excludes_the_input_embedding_only():
    (counts, expected), = run_distributed(_count, 1)
    assert counts[False] == expected
    assert counts[True] == expected  # tied: the shared table counts once, as the output layer
