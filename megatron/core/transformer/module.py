"""MegatronModule: the base of every Megatron Core module; Float16Module: the half-precision wrapper."""
import torch


class MegatronModule(torch.nn.Module):
    """A torch module that carries its TransformerConfig."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config

    def state_dict_for_save_checkpoint(self, prefix: str = "", keep_vars: bool = False):
        return self.state_dict(prefix=prefix, keep_vars=keep_vars)

    def set_is_first_microbatch(self):
        """Kept for API compatibility (Transformer Engine's weight caching); nothing to do here."""


class Float16Module(MegatronModule):
    """Hold the wrapped module's parameters in fp16/bf16; return fp32 outputs from the last stage.

    fp32 master weights live in the optimizer, not here (Megatron's mixed-precision regime).
    """

    def __init__(self, config, module: torch.nn.Module):
        super().__init__(config)
        self.dtype = torch.bfloat16 if config.bf16 else torch.float16
        self.add_module("module", module.to(self.dtype))

    def set_input_tensor(self, input_tensor):
        return self.module.set_input_tensor(input_tensor)

    def forward(self, *inputs, **kwargs):
        output = self.module(*inputs, **kwargs)
        if torch.is_tensor(output) and output.is_floating_point():
            output = output.float()
        return output

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def state_dict_for_save_checkpoint(self, prefix: str = "", keep_vars: bool = False):
        return self.module.state_dict_for_save_checkpoint(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)
