"""Enums of the transformer package (Megatron Core's names)."""
import enum

from megatron.core.enums import ModelType  # noqa: F401  (re-exported: older scripts import it from here)


class AttnMaskType(enum.Enum):
    padding = 1
    causal = 2
    no_mask = 3
    padding_causal = 4
    arbitrary = 5


class AttnType(enum.Enum):
    self_attn = 1
    cross_attn = 2


class LayerType(enum.Enum):
    encoder = 1
    decoder = 2
