"""Random-number streams of tensor parallelism, and activation recomputation that respects them.

Megatron keeps two streams on every rank:
- the default generator, seeded identically on every tensor-parallel rank, so dropout on
  activations that are replicated across TP (e.g. the residual stream) agrees across ranks;
- the 'model-parallel-rng' stream (seed + 2718 + tp_rank), entered with
  ``get_cuda_rng_tracker().fork()``, so dropout on activations that are split across TP (attention
  heads, or everything under sequence parallelism) differs across ranks.
The tracker works on whichever device we compute on: CUDA's generator, or the CPU generator.
"""
import contextlib
from typing import Dict, Optional

import torch

from megatron.core import device, parallel_state
from megatron.core.utils import no_effect

_MODEL_PARALLEL_RNG_TRACKER_NAME = "model-parallel-rng"
_EXPERT_PARALLEL_RNG_TRACKER_NAME = "expert-parallel-rng"
_DATA_PARALLEL_RNG_TRACKER_NAME = "data-parallel-rng"
_PARAM_INIT_SEED: Optional[int] = None


def _get_device_rng_state() -> torch.Tensor:
    return torch.cuda.get_rng_state() if device.on_cuda() else torch.get_rng_state()


def _set_device_rng_state(state: torch.Tensor) -> None:
    if device.on_cuda():
        torch.cuda.set_rng_state(state)
    else:
        torch.set_rng_state(state)


class CudaRNGStatesTracker:
    """Named generator states that can be swapped in with ``fork(name)``.

    The name says CUDA for Megatron compatibility; on a CPU run it tracks the CPU generator.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.states_: Dict[str, torch.Tensor] = {}
        self.seeds_ = set()

    def is_initialized(self) -> bool:
        return bool(self.states_)

    def get_states(self) -> Dict[str, torch.Tensor]:
        return {name: state.clone() for name, state in self.states_.items()}

    def set_states(self, states: Dict[str, torch.Tensor]) -> None:
        self.states_ = {name: state.clone() for name, state in states.items()}

    def add(self, name: str, seed: int) -> None:
        if seed in self.seeds_:
            raise ValueError(f"RNG seed {seed} is already used by another tracked stream")
        if name in self.states_:
            raise ValueError(f"RNG stream {name!r} already exists")
        self.seeds_.add(seed)
        saved = _get_device_rng_state()
        if device.on_cuda():
            torch.cuda.manual_seed(seed)
        else:
            torch.manual_seed(seed)
        self.states_[name] = _get_device_rng_state()
        _set_device_rng_state(saved)

    @contextlib.contextmanager
    def fork(self, name: str = _MODEL_PARALLEL_RNG_TRACKER_NAME):
        """Run the block on stream ``name``, then put the default stream back."""
        if name not in self.states_:
            raise RuntimeError(f"RNG stream {name!r} is not set: call model_parallel_cuda_manual_seed(seed) first")
        saved = _get_device_rng_state()
        _set_device_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = _get_device_rng_state()
            _set_device_rng_state(saved)


_CUDA_RNG_STATE_TRACKER = CudaRNGStatesTracker()


_ONE_TRACKER = ("one tracker serves every purpose here: Transformer Engine's tracker, the inference "
                "tracker and CUDA-graph-safe generators only matter with TE or CUDA graphs, which are not used")


def get_cuda_rng_tracker(use_te_rng_tracker: bool = False, inference_rng_tracker: bool = False,
                         use_cudagraphable_rng: bool = False) -> CudaRNGStatesTracker:
    no_effect(_ONE_TRACKER, use_te_rng_tracker, inference_rng_tracker, use_cudagraphable_rng)
    return _CUDA_RNG_STATE_TRACKER


def get_expert_parallel_rng_tracker_name() -> str:
    return _EXPERT_PARALLEL_RNG_TRACKER_NAME


def get_data_parallel_rng_tracker_name() -> str:
    return _DATA_PARALLEL_RNG_TRACKER_NAME


def model_parallel_cuda_manual_seed(seed: int, te_rng_tracker: bool = False, inference_rng_tracker: bool = False,
                                    use_cudagraphable_rng: bool = False, tp_rank: Optional[int] = None,
                                    ep_rank: Optional[int] = None, etp_rank: Optional[int] = None,
                                    force_reset_rng: bool = False) -> None:
    """Seed the default device stream and the tracked streams as Megatron does.

    ``tp_rank``, ``ep_rank``, ``etp_rank``: this rank's coordinates (default: the global layout's),
    so a model built over its own process groups seeds from them. The tracker is reset on every
    call (``force_reset_rng`` asks for that). Also records ``seed`` as the parameter-initialisation
    seed unless one was set explicitly (``set_param_init_seed``), so Megatron Core scripts that only
    call this get reproducible init.
    """
    no_effect(_ONE_TRACKER, te_rng_tracker, inference_rng_tracker, use_cudagraphable_rng)
    no_effect("the tracker is reset on every call", force_reset_rng)
    if tp_rank is None:
        tp_rank = parallel_state.get_tensor_model_parallel_rank()
    if ep_rank is None:
        ep_rank = parallel_state.get_expert_model_parallel_rank()
    if etp_rank is None:
        etp_rank = parallel_state.get_expert_tensor_parallel_rank()
    if device.on_cuda():
        torch.cuda.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    tracker = get_cuda_rng_tracker()
    tracker.reset()
    tracker.add(_MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(_EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ep_rank + etp_rank)
    tracker.add(_DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    global _PARAM_INIT_SEED
    if _PARAM_INIT_SEED is None:
        _PARAM_INIT_SEED = seed


def set_param_init_seed(seed: Optional[int]) -> None:
    """The seed that, with each parameter's global name, fixes its initial value."""
    global _PARAM_INIT_SEED
    _PARAM_INIT_SEED = seed


def get_param_init_seed() -> int:
    return 1234 if _PARAM_INIT_SEED is None else _PARAM_INIT_SEED


class CheckpointFunction(torch.autograd.Function):
    """Recompute ``run_function`` in backward instead of keeping its activations.

    The CPU, device and tracked RNG states are saved at forward and restored for the recomputation,
    so dropout masks in the recomputed pass equal those of the original pass.

    ``distribute_saved_activations``: False keeps the whole inputs; True (or a tensor-parallel
    process group, True meaning the global layout's) keeps only this rank's 1/TP slice of the first
    input (the hidden states, identical on every TP rank when sequence parallelism is off) and
    all-gathers it back before recomputing.
    """

    @staticmethod
    def forward(ctx, run_function, distribute_saved_activations, *args):
        ctx.run_function = run_function
        ctx.cpu_rng_state = torch.get_rng_state()
        ctx.device_rng_state = _get_device_rng_state()
        ctx.tracker_states = get_cuda_rng_tracker().get_states()
        with torch.no_grad():
            outputs = run_function(*args)
        ctx.distribute_group = _distribute_group(distribute_saved_activations)
        ctx.tensor_indices, tensors, ctx.other_args = [], [], []
        for i, arg in enumerate(args):
            if torch.is_tensor(arg):
                ctx.tensor_indices.append(i)
                tensors.append(arg)
                ctx.other_args.append(None)
            else:
                ctx.other_args.append(arg)
        if ctx.distribute_group is not None and ctx.tensor_indices[:1] == [0]:
            # A copy of this rank's slice, so the full input is freed once its other users are done.
            ctx.first_shape, ctx.first_requires_grad = args[0].shape, args[0].requires_grad
            tensors[0] = _own_slice(args[0].detach(), ctx.distribute_group)
        else:
            ctx.distribute_group = None
        ctx.save_for_backward(*tensors)
        return outputs

    @staticmethod
    def backward(ctx, *grad_outputs):
        args = list(ctx.other_args)
        saved = list(ctx.saved_tensors)
        if ctx.distribute_group is not None:
            from megatron.core.tensor_parallel.utils import gather_split_1d_tensor
            full = gather_split_1d_tensor(saved[0], tp_group=ctx.distribute_group)
            numel = 1
            for n in ctx.first_shape:
                numel *= n
            saved[0] = full[:numel].view(ctx.first_shape).requires_grad_(ctx.first_requires_grad)
        for i, tensor in zip(ctx.tensor_indices, saved):
            args[i] = tensor.detach().requires_grad_(tensor.requires_grad)
        saved_cpu, saved_device = torch.get_rng_state(), _get_device_rng_state()
        saved_tracker = get_cuda_rng_tracker().get_states()
        torch.set_rng_state(ctx.cpu_rng_state)
        _set_device_rng_state(ctx.device_rng_state)
        get_cuda_rng_tracker().set_states(ctx.tracker_states)
        try:
            with torch.enable_grad():
                outputs = ctx.run_function(*args)
        finally:
            torch.set_rng_state(saved_cpu)
            _set_device_rng_state(saved_device)
            get_cuda_rng_tracker().set_states(saved_tracker)
        if torch.is_tensor(outputs):
            outputs = (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if torch.is_tensor(o) and o.requires_grad]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        grads = tuple(a.grad if torch.is_tensor(a) else None for a in args)
        return (None, None) + grads


def _distribute_group(distribute_saved_activations):
    """The group the saved input is split over, or None when it is kept whole."""
    if distribute_saved_activations is None or distribute_saved_activations is False:
        return None
    if distribute_saved_activations is True:
        return parallel_state.get_tensor_model_parallel_group()
    return distribute_saved_activations


def _own_slice(tensor: torch.Tensor, group) -> torch.Tensor:
    """This rank's 1/size slice of ``tensor`` flattened, zero-padded so every rank's slice is equal."""
    from megatron.core.tensor_parallel.utils import split_tensor_into_1d_equal_chunks
    size = torch.distributed.get_world_size(group)
    flat = tensor.reshape(-1)
    pad = -flat.numel() % size
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return split_tensor_into_1d_equal_chunks(flat, new_buffer=True, tp_group=group)


def checkpoint(function, distribute_saved_activations: bool, *args):
    """Megatron's activation checkpoint: recompute ``function(*args)`` during backward.

    ``distribute_saved_activations``: keep only this rank's 1/TP slice of ``args[0]`` (see
    CheckpointFunction); a process group may be given instead of True to split over that group."""
    return CheckpointFunction.apply(function, distribute_saved_activations, *args)
