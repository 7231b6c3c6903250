"""Small transformer helpers that users' code imports from Megatron Core's ``transformer.utils``.

(``make_sharded_tensors_for_checkpoint`` is left out: sharded checkpoints are not implemented yet.)
"""
import torch

from megatron.core.transformer.mlp import openai_gelu as _tanh_gelu


def get_linear_layer(rows: int, columns: int, init_method, perform_initialization: bool = True) -> torch.nn.Linear:
    """A plain ``torch.nn.Linear(rows, columns)``: weight from ``init_method``, bias zero."""
    layer = torch.nn.Linear(rows, columns)
    if perform_initialization:
        init_method(layer.weight)
    with torch.no_grad():
        layer.bias.zero_()
    return layer


def get_default_causal_mask(sq: int) -> torch.Tensor:
    """[sq, sq] bool mask, True above the diagonal (the positions a token must not attend to)."""
    return torch.triu(torch.ones(sq, sq, dtype=torch.bool), diagonal=1)


def attention_mask_func(attention_scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Megatron's masking: scores where the mask is True become -10000 (in place)."""
    attention_scores.masked_fill_(attention_mask, -10000.0)
    return attention_scores


def openai_gelu(x: torch.Tensor) -> torch.Tensor:
    """GeLU with the tanh approximation (GPT-2's)."""
    return _tanh_gelu(x)


def erf_gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GeLU through erf, with Megatron's constant 1.41421 for sqrt(2)."""
    return x * 0.5 * (torch.erf(x / 1.41421).to(dtype=x.dtype) + torch.ones_like(x))


__all__ = ["get_linear_layer", "get_default_causal_mask", "attention_mask_func", "openai_gelu", "erf_gelu"]
