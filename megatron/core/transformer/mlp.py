"""The feed-forward block: column-parallel fc1, activation (GeLU / SwiGLU / squared ReLU), row-parallel fc2."""
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F

from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec, build_module


@dataclass
class MLPSubmodules:
    linear_fc1: Union[ModuleSpec, type] = None
    linear_fc2: Union[ModuleSpec, type] = None


class MLP(MegatronModule):
    """With a gated linear unit (SwiGLU), fc1 produces [gate; up] and the block computes
    act(gate) * up; each tensor-parallel rank holds its slice of gate and its slice of up."""

    def __init__(self, config, submodules: MLPSubmodules, is_expert: bool = False,
                 input_size: Optional[int] = None, ffn_hidden_size: Optional[int] = None, tp_group=None):
        super().__init__(config)
        self.input_size = input_size or config.hidden_size
        ffn = ffn_hidden_size or config.ffn_hidden_size
        gated = config.gated_linear_unit
        self.linear_fc1 = build_module(
            submodules.linear_fc1, self.input_size, ffn * 2 if gated else ffn, config=config,
            init_method=config.init_method, gather_output=False, bias=config.add_bias_linear,
            skip_bias_add=False, is_expert=is_expert, stride=2 if gated else 1, tp_group=tp_group)
        self.linear_fc2 = build_module(
            submodules.linear_fc2, ffn, config.hidden_size, config=config,
            init_method=config.output_layer_init_method, bias=config.add_bias_linear, input_is_parallel=True,
            skip_bias_add=True, is_expert=is_expert, tp_group=tp_group)
        self.activation_func = config.activation_func

    def forward(self, hidden_states: torch.Tensor):
        intermediate, _ = self.linear_fc1(hidden_states)
        if self.config.gated_linear_unit:
            gate, up = intermediate.chunk(2, dim=-1)
            intermediate = self.activation_func(gate) * up
        else:
            intermediate = self.activation_func(intermediate)
        return self.linear_fc2(intermediate)


def openai_gelu(x: torch.Tensor) -> torch.Tensor:
    """GeLU with the tanh approximation (GPT-2's)."""
    return F.gelu(x, approximate="tanh")


def squared_relu(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(F.relu(x), 2)
