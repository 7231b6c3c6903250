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


def _cast_floats(value, dtype):
    if torch.is_tensor(value) and value.dtype == torch.float32:
        return value.to(dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    return value


class Float16Module(MegatronModule):
    """Hold the wrapped module's parameters in fp16/bf16; on the first pipeline stage cast fp32
    inputs to that dtype, and on the last stage return fp32 outputs (as Megatron does).

    fp32 master weights live in the optimizer, not here (Megatron's mixed-precision regime). The
    stage is the wrapped module's ``pre_process`` / ``post_process`` when it has them.
    """

    def __init__(self, config, module: torch.nn.Module):
        super().__init__(config)
        self.dtype = torch.bfloat16 if config.bf16 else torch.float16
        self.add_module("module", module.to(self.dtype))

    def set_input_tensor(self, input_tensor):
        return self.module.set_input_tensor(input_tensor)

    def forward(self, *inputs, **kwargs):
        if getattr(self.module, "pre_process", True):
            inputs = _cast_floats(inputs, self.dtype)
            kwargs = {k: _cast_floats(v, self.dtype) for k, v in kwargs.items()}
        output = self.module(*inputs, **kwargs)
        if getattr(self.module, "post_process", True) and torch.is_tensor(output) and output.is_floating_point():
            output = output.float()
        return output

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def state_dict_for_save_checkpoint(self, prefix: str = "", keep_vars: bool = False):
        return self.module.state_dict_for_save_checkpoint(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)
