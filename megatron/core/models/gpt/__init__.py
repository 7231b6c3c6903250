"""GPT models (Megatron Core's package: ``from megatron.core.models.gpt import GPTModel``)."""
from megatron.core.models.gpt.gpt_model import GPTModel

__all__ = ["GPTModel"]
