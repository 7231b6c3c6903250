"""What the schedules share: the process groups and communicator they use, the activation shape,
what is kept of a sent output, the no_sync window and the call of finalize_grads."""
import contextlib
from typing import Callable, List, Optional, Tuple

import torch

from megatron.core import device, parallel_state
from megatron.core.errors import ConfigError
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator
from megatron.core.utils import get_pg_size


def get_tensor_shapes(*, seq_length: int, micro_batch_size: int, decoder_seq_length: Optional[int], config,
                      tp_group=None, cp_group=None) -> List[Tuple[int, int, int]]:
    """Shapes of the activations sent between stages: [(seq_length / cp [/ tp under sequence
    parallelism], micro_batch_size, hidden_size)]. ``tp_group``/``cp_group`` None: one rank each."""
    if decoder_seq_length is not None and decoder_seq_length != seq_length:
        raise ConfigError(f"--decoder-seq-length {decoder_seq_length} differs from --seq-length {seq_length}: "
                          "only decoder-only models are pipelined here; leave --decoder-seq-length unset")
    split = get_pg_size(cp_group) * (get_pg_size(tp_group) if config.sequence_parallel else 1)
    if seq_length % split != 0:
        raise ConfigError(f"--seq-length {seq_length} must be divisible by the context-parallel size"
                          f"{' x tensor-parallel size (sequence parallelism)' if config.sequence_parallel else ''} "
                          f"= {split}: each pipeline stage sends seq_length / {split} positions")
    return [(seq_length // split, micro_batch_size, config.hidden_size)]


def pipeline_groups(config, pg_collection, p2p_communicator) -> Tuple[P2PCommunicator, object, object]:
    """(communicator, tp group, cp group): from ``pg_collection`` when given, else the global
    layout's; the communicator is ``p2p_communicator`` when given, else one over the pp group."""
    if pg_collection is not None:
        pp_group, tp_group, cp_group = (pg_collection.group(name) for name in ("pp", "tp", "cp"))
    else:
        pp_group = parallel_state.get_pipeline_model_parallel_group()
        tp_group = parallel_state.get_tensor_model_parallel_group()
        cp_group = parallel_state.get_context_parallel_group()
    if p2p_communicator is None and pp_group is None:
        raise ConfigError("a pipelined schedule needs a pipeline group, but pg_collection.pp is None "
                          "(one rank): pass the pp group, or use the schedule of --pipeline-model-parallel-size 1")
    comm = p2p_communicator if p2p_communicator is not None else P2PCommunicator(pp_group, config)
    if comm.pp_group.size() != config.pipeline_model_parallel_size:
        raise ConfigError(f"the pipeline group has {comm.pp_group.size()} ranks but the model config says "
                          f"pipeline_model_parallel_size={config.pipeline_model_parallel_size}; build the model "
                          "with the --pipeline-model-parallel-size of the process groups")
    return comm, tp_group, cp_group


class _SentOutput(torch.autograd.Function):
    """Stands in for a stage output that has been sent: the output's shape on one element of
    memory; its backward hands the gradient received from the next stage to the output's node."""

    @staticmethod
    def forward(ctx, output):
        return output.new_empty(1).expand(output.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad


def output_for_backward(output: torch.Tensor, deallocate_pipeline_outputs: bool = False) -> torch.Tensor:
    """What a schedule keeps of a sent stage output until its backward (config.deallocate_pipeline_outputs).

    Without deallocation, the output itself. With it, a stand-in of the same shape whose storage
    is one element (so ``torch.autograd.backward(kept, grad)``, which checks the gradient's shape,
    runs as usual): the schedule drops its reference to the output, whose memory goes as soon as
    nothing else holds it. Nothing is mutated: if the output's own node saved it for backward
    (tanh, sigmoid, ...), autograd keeps it, and any saved_tensors_hooks see an untouched tensor.
    (Megatron instead empties the output's ``.data``, which breaks backward when such a node or a
    hook kept the output itself.)
    """
    if not deallocate_pipeline_outputs or output.grad_fn is None:
        return output
    return _SentOutput.apply(output)


class GradSyncWindow:
    """``hooks.no_sync`` held open on demand: entered before the backwards that must not reduce
    gradients yet, left before the ones that may."""

    def __init__(self, no_sync: Optional[Callable]):
        self._factory = no_sync or contextlib.nullcontext
        self._context = None

    def suspend(self) -> None:
        if self._context is None:
            self._context = self._factory()
            self._context.__enter__()

    def resume(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)


def new_token_count() -> torch.Tensor:
    """The step's running count of loss tokens (stays 0 on stages without the loss)."""
    return torch.zeros((), dtype=torch.int, device=device.current_device())


def add_tokens(total: torch.Tensor, num_tokens) -> torch.Tensor:
    return total + torch.as_tensor(num_tokens, device=total.device).to(torch.int)


def finalize(hooks: ScheduleHooks, model_chunks: List[torch.nn.Module], total_num_tokens: torch.Tensor, config,
             pg_collection, force_all_reduce: Optional[bool]) -> None:
    """Call ``hooks.finalize_grads`` after the last backward, the same way in every schedule.

    ``num_tokens`` is this rank's summed count when per-token loss is on (else None); under
    pipeline parallelism it is only meaningful on the last stage (0 elsewhere), and
    finalize_model_grads must take it from there. The keywords are passed only when set, so
    (model, num_tokens) callables keep working.
    """
    if hooks.finalize_grads is None:
        return
    extra = {"pg_collection": pg_collection} if pg_collection is not None else {}
    if force_all_reduce:
        extra["force_all_reduce"] = force_all_reduce
    hooks.finalize_grads(model_chunks, total_num_tokens if config.calculate_per_token_loss else None, **extra)
