"""Loss scalers for fp16 training, with Megatron Core's classes and checkpoint format.

The optimizer multiplies the loss by ``scale`` before backward, multiplies the gradients by
``inv_scale`` afterwards, and calls ``update(found_inf)`` once per step.

Dynamic scaling (Megatron's rule, which differs from ``torch.amp.GradScaler``):
- an overflow resets the growth counter and spends one unit of hysteresis; once hysteresis is
  spent, every further overflow multiplies the scale by ``backoff_factor`` (never below
  ``min_scale``);
- ``growth_interval`` clean steps in a row multiply the scale by ``growth_factor`` and refill the
  hysteresis. Clean steps alone do not refill it.
"""
from abc import ABC, abstractmethod
from typing import Dict

import torch

from megatron.core.device import current_device
from megatron.core.errors import ConfigError


def _scalar_tensor(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float, device=current_device())


class MegatronGradScaler(ABC):
    """Holds the loss scale as a one-element float32 tensor on the compute device."""

    def __init__(self, initial_scale: float):
        if not initial_scale > 0.0:
            raise ConfigError(f"the loss scale (--loss-scale / --initial-loss-scale) must be > 0, got {initial_scale}")
        self._scale = _scalar_tensor(initial_scale)

    @property
    def scale(self) -> torch.Tensor:
        return self._scale

    @property
    def inv_scale(self) -> torch.Tensor:
        # Reciprocal in float64 so that 1/2^k stays exact before the cast back to float32.
        return self._scale.double().reciprocal().float()

    @abstractmethod
    def update(self, found_inf: bool) -> None:
        ...

    @abstractmethod
    def state_dict(self) -> Dict:
        ...

    @abstractmethod
    def load_state_dict(self, state_dict: Dict) -> None:
        ...


class ConstantGradScaler(MegatronGradScaler):
    """``--loss-scale S``: the scale never changes, whatever the gradients hold."""

    def update(self, found_inf: bool) -> None:
        pass

    def state_dict(self) -> Dict:
        return {}

    def load_state_dict(self, state_dict: Dict) -> None:
        pass


class DynamicGradScaler(MegatronGradScaler):
    """Backs off after ``hysteresis`` overflows, grows after ``growth_interval`` clean steps."""

    def __init__(
        self,
        initial_scale: float,
        min_scale: float,
        growth_factor: float,
        backoff_factor: float,
        growth_interval: int,
        hysteresis: int,
    ):
        super().__init__(initial_scale)
        if not 0.0 < min_scale <= initial_scale:
            raise ConfigError(
                f"--min-loss-scale must be > 0 and <= --initial-loss-scale ({initial_scale}), got {min_scale}"
            )
        if not growth_factor > 1.0:
            raise ConfigError(f"loss-scale growth factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ConfigError(f"loss-scale backoff factor must be in (0, 1), got {backoff_factor}")
        if not growth_interval > 0:
            raise ConfigError(f"--loss-scale-window must be > 0, got {growth_interval}")
        if not hysteresis > 0:
            raise ConfigError(f"--hysteresis must be > 0, got {hysteresis}")
        self.min_scale = _scalar_tensor(min_scale)
        self.growth_factor = _scalar_tensor(growth_factor)
        self.backoff_factor = _scalar_tensor(backoff_factor)
        self.growth_interval = growth_interval
        self.hysteresis = hysteresis
        self._growth_tracker = 0
        self._hysteresis_tracker = hysteresis

    def update(self, found_inf: bool) -> None:
        if found_inf:
            self._growth_tracker = 0
            self._hysteresis_tracker -= 1
            if self._hysteresis_tracker <= 0:
                self._scale = torch.max(self._scale * self.backoff_factor, self.min_scale)
            return
        self._growth_tracker += 1
        if self._growth_tracker == self.growth_interval:
            self._growth_tracker = 0
            self._hysteresis_tracker = self.hysteresis
            self._scale = self._scale * self.growth_factor

    def state_dict(self) -> Dict:
        return {
            "scale": self._scale,
            "growth_tracker": self._growth_tracker,
            "hysteresis_tracker": self._hysteresis_tracker,
        }

    def load_state_dict(self, state_dict: Dict) -> None:
        self._scale = state_dict["scale"].to(device=current_device(), dtype=torch.float)
        self._growth_tracker = state_dict["growth_tracker"]
        self._hysteresis_tracker = state_dict["hysteresis_tracker"]
