"""The mixed-precision optimizer: fp32 master weights, loss scaling, global-norm clipping.

The model may hold bf16/fp16 parameters; the optimizer steps fp32 copies ("main params") with the
fp32 gradients accumulated by the data-parallel wrapper (``param.main_grad``), then copies the
result back. With fp32 parameters the main params are the model's own.
"""
import math
from typing import Callable, Dict, List, Optional, Set, Tuple

import torch
import torch.distributed as dist

from megatron.core import parallel_state
from megatron.core.optimizer.clip_grads import (
    clip_grad_by_total_norm_fp32,
    count_zeros_fp32,
    get_grad_norm_fp32,
)
from megatron.core.optimizer.grad_scaler import MegatronGradScaler
from megatron.core.tensor_parallel.layers import param_is_not_tensor_parallel_duplicate


_GLOBAL = object()  # "not given": take the global layout's group


def _global_grad_stats_group():
    if not parallel_state.model_parallel_is_initialized():
        return None
    if parallel_state.get_tensor_model_parallel_world_size() * parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return None
    return parallel_state.get_model_parallel_group()


class MixedPrecisionOptimizer:
    """Wraps a torch optimizer built over the fp32 main params.

    ``model_params_groups[i][j]`` is the model parameter whose main copy is
    ``optimizer.param_groups[i]['params'][j]``. ``grad_stats_parallel_group`` is the group the grad
    norm, zero count and fp16 overflow flag are reduced over (the model-parallel group; None: this
    rank alone; a list: reduced over each in turn); ``params_counted_in_grad_norm`` holds the ids of the model parameters this rank
    counts in the norm (get_megatron_optimizer derives both from the ParamLayout table). The fp16
    overflow flag is reduced (MAX) over each of ``found_inf_groups`` in turn (model-parallel, then
    data-parallel: together every rank of the model), so a step is skipped on every rank or none.
    Left out, these come from the global layout (the whole world for the overflow flag) and
    Megatron's parameter attributes.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config, grad_scaler: Optional[MegatronGradScaler],
                 model_params_groups: List[List[torch.nn.Parameter]], init_state_fn: Optional[Callable] = None,
                 grad_stats_parallel_group=_GLOBAL, params_counted_in_grad_norm: Optional[Set[int]] = None,
                 found_inf_groups=_GLOBAL):
        self.optimizer = optimizer
        self.config = config
        self.grad_scaler = grad_scaler
        self.init_state_fn = init_state_fn
        self.model_params_groups = model_params_groups
        self.main_params_groups = [group["params"] for group in optimizer.param_groups]
        self.pairs: List[Tuple[torch.nn.Parameter, torch.nn.Parameter]] = [
            (model_p, main_p)
            for model_group, main_group in zip(model_params_groups, self.main_params_groups)
            for model_p, main_p in zip(model_group, main_group)
        ]
        self.has_separate_main_params = any(m is not p for m, p in self.pairs)
        if grad_stats_parallel_group is _GLOBAL:
            grad_stats_parallel_group = _global_grad_stats_group()
        self.grad_stats_parallel_group = grad_stats_parallel_group
        if params_counted_in_grad_norm is None:
            params_counted_in_grad_norm = {id(p) for p, _ in self.pairs if param_is_not_tensor_parallel_duplicate(p)}
        self.params_counted_in_grad_norm = params_counted_in_grad_norm
        if found_inf_groups is _GLOBAL:
            found_inf_groups = [dist.group.WORLD] if dist.is_initialized() and dist.get_world_size() > 1 else []
        self.found_inf_groups = [g for g in found_inf_groups if g is not None]

    # ---- torch-optimizer-like surface -------------------------------------------------------
    @property
    def param_groups(self) -> List[Dict]:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def get_parameters(self) -> List[torch.nn.Parameter]:
        return [main for _, main in self.pairs]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for model_p, main_p in self.pairs:
            for p in (model_p, main_p):
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def get_loss_scale(self) -> torch.Tensor:
        if self.grad_scaler is None:
            return torch.ones((), dtype=torch.float32)
        return self.grad_scaler.scale

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Multiply the loss by the current loss scale before backward (fp16)."""
        if self.grad_scaler is None:
            return loss
        return loss * self.grad_scaler.scale.to(loss.device)

    # ---- the step ---------------------------------------------------------------------------
    def _gather_main_grads(self) -> None:
        for model_p, main_p in self.pairs:
            grad = getattr(model_p, "main_grad", None)
            if grad is None:
                grad = model_p.grad
            if grad is None:
                main_p.grad = None
                continue
            main_p.grad = grad if grad.dtype == torch.float32 else grad.float()

    def _main_grads(self) -> List[torch.Tensor]:
        return [main.grad for _, main in self.pairs if main.grad is not None]

    def get_main_grads_for_grad_norm(self) -> List[torch.Tensor]:
        """Gradients this rank counts in the global norm: each parameter once across TP ranks."""
        return [main.grad for model_p, main in self.pairs
                if main.grad is not None and id(model_p) in self.params_counted_in_grad_norm]

    def _unscale_and_find_inf(self) -> bool:
        """Divide the gradients by the loss scale; True if any rank saw an inf or NaN."""
        grads = self._main_grads()
        found_inf = torch.zeros(1, dtype=torch.float32, device=grads[0].device if grads else "cpu")
        inv_scale = self.grad_scaler.inv_scale.to(found_inf.device)
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
        # Every rank of the model must take the same decision: skip the step if any rank overflowed.
        for group in self.found_inf_groups:
            if group.size() > 1:
                dist.all_reduce(found_inf, op=dist.ReduceOp.MAX, group=group)
        return bool(found_inf.item() > 0)

    def get_grad_norm(self) -> float:
        return get_grad_norm_fp32(self.get_main_grads_for_grad_norm(),
                                  grad_stats_parallel_group=self.grad_stats_parallel_group)

    def count_zeros(self) -> float:
        return count_zeros_fp32(self.get_main_grads_for_grad_norm(), self.grad_stats_parallel_group)

    @torch.no_grad()
    def step(self) -> Tuple[bool, Optional[float], Optional[float]]:
        """Returns (update_successful, grad_norm, num_zeros_in_grad).

        A step skipped for an fp16 overflow returns grad_norm None; one refused for a non-finite
        gradient norm returns that norm."""
        self._gather_main_grads()
        if self.grad_scaler is not None:
            found_inf = self._unscale_and_find_inf()
            self.grad_scaler.update(found_inf)
            if found_inf:
                return False, None, None
        grad_norm = self.get_grad_norm()
        if not math.isfinite(grad_norm):
            # Without a loss scaler nothing absorbs a NaN/inf gradient: refuse the step rather than
            # write NaN into the weights; the caller decides whether to stop or skip.
            return False, grad_norm, None
        if self.config.clip_grad > 0.0:
            clip_grad_by_total_norm_fp32(self._main_grads(), self.config.clip_grad, grad_norm)
        num_zeros = self.count_zeros() if self.config.log_num_zeros_in_grad else None
        self.optimizer.step()
        self._copy_main_params_to_model_params()
        return True, grad_norm, num_zeros

    def _copy_main_params_to_model_params(self) -> None:
        if self.has_separate_main_params:
            for model_p, main_p in self.pairs:
                model_p.data.copy_(main_p.data)

    def reload_model_params(self) -> None:
        """After loading model weights: refresh the fp32 copies from them."""
        if self.has_separate_main_params:
            with torch.no_grad():
                for model_p, main_p in self.pairs:
                    main_p.data.copy_(model_p.data.float())

    # ---- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> Dict:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if self.has_separate_main_params:
            state["fp32_from_fp16_params"] = [[p.detach().clone() for p in group] for group in self.main_params_groups]
        return state

    def load_state_dict(self, state_dict: Dict) -> None:
        self.optimizer.load_state_dict(state_dict["optimizer"])
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        if self.has_separate_main_params and "fp32_from_fp16_params" in state_dict:
            with torch.no_grad():
                for group, saved in zip(self.main_params_groups, state_dict["fp32_from_fp16_params"]):
                    for main_p, value in zip(group, saved):
                        main_p.copy_(value)


# Megatron's class names for the two cases.
FP32Optimizer = MixedPrecisionOptimizer
Float16OptimizerWithFloat16Params = MixedPrecisionOptimizer
MegatronOptimizer = MixedPrecisionOptimizer
