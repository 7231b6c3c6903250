"""residual + dropout(x + bias): the step that closes attention and MLP blocks."""
import torch
import torch.nn.functional as F

from megatron.core.utils import no_effect


def bias_dropout_add(x_with_bias, residual: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    x, bias = x_with_bias
    if bias is not None:
        x = x + bias
    if training and prob > 0:
        x = F.dropout(x, p=prob, training=True)
    return residual + x


def get_bias_dropout_add(training: bool, fused: bool = False):
    """Megatron's factory; fusion is left to torch.compile, so ``fused`` only picks the same function."""
    no_effect("fusion is left to torch.compile: the result is the same", fused)
    def _bda(x_with_bias, residual, prob):
        return bias_dropout_add(x_with_bias, residual, prob, training)
    return _bda
