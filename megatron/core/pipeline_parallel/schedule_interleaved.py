"""The interleaved 1F1B schedule (v model chunks per rank, virtual pipeline stages): Megatron Core's
``forward_backward_pipelining_with_interleaving``. The order of work and exchanges is the plan of
interleaved_plan.py; this module runs it."""
import contextlib
from collections import deque
from typing import Iterator, List, Optional, Union

import torch

from megatron.core import parallel_state
from megatron.core.errors import ConfigError
from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.pipeline_parallel.interleaved_plan import Unit, interleaved_plan
from megatron.core.pipeline_parallel.schedule_common import (
    GradSyncWindow, add_tokens, finalize, get_tensor_shapes, new_token_count, output_for_backward, pipeline_groups)
from megatron.core.pipeline_parallel.steps import backward_step, check_first_val_step, forward_step
from megatron.core.utils import get_model_config, get_pg_size, reject_unsupported

_VIRTUAL_FLAGS = "--num-layers-per-virtual-pipeline-stage / --num-virtual-stages-per-pipeline-rank"
_M_IS = "num_microbatches = --global-batch-size / (--micro-batch-size x data-parallel size)"


def check_interleaved_schedule(config, pp_size: int, num_chunks: int, num_microbatches: int, group_size: int) -> None:
    """Megatron Core's rules for the interleaved schedule; ConfigError naming the flags otherwise.

    The micro-batch group size G (--microbatch-group-size-per-virtual-pipeline-stage, default the
    pipeline size p) must lie in [p, M], and the last group, M mod G, must be empty or hold at least
    p micro-batches: a shorter group would leave the ring's hand-over between chunks without work
    to overlap. With the default G = p this means M must be a multiple of p.
    """
    if pp_size < 2:
        raise ConfigError(f"the interleaved schedule (virtual pipeline stages, {_VIRTUAL_FLAGS}) needs "
                          f"--pipeline-model-parallel-size > 1, got {pp_size}")
    vp = config.virtual_pipeline_model_parallel_size
    if vp is not None and num_chunks != vp:
        raise ConfigError(f"the interleaved schedule runs one model chunk per virtual stage: got {num_chunks} "
                          f"chunks but config.virtual_pipeline_model_parallel_size is {vp} ({_VIRTUAL_FLAGS})")
    if config.overlap_p2p_comm and config.batch_p2p_comm:
        raise ConfigError("config.overlap_p2p_comm and config.batch_p2p_comm are both set: the interleaved "
                          "schedule takes one or the other (Megatron's rule; --overlap-p2p-communication means "
                          "unbatched exchanges); unset one of them")
    flag = "--microbatch-group-size-per-virtual-pipeline-stage"
    if not pp_size <= group_size <= num_microbatches:
        raise ConfigError(
            f"the interleaved schedule runs micro-batches in groups of {group_size} ({flag}, default "
            f"--pipeline-model-parallel-size {pp_size}), which must lie in [--pipeline-model-parallel-size "
            f"{pp_size}, num_microbatches {num_microbatches}] ({_M_IS}); raise --global-batch-size or lower "
            f"--micro-batch-size{' or ' + flag if group_size > pp_size else ''}")
    remainder = num_microbatches % group_size
    if 0 < remainder < pp_size:
        raise ConfigError(
            f"the interleaved schedule's last group of micro-batches would hold {remainder}: num_microbatches "
            f"({num_microbatches}; {_M_IS}) mod the group size {group_size} ({flag}, default "
            f"--pipeline-model-parallel-size) must be 0 or at least --pipeline-model-parallel-size {pp_size}; "
            f"with the default group size, make num_microbatches a multiple of {pp_size}")


def _chunks(model, data_iterator):
    if not isinstance(model, list) or not all(isinstance(chunk, torch.nn.Module) for chunk in model):
        raise TypeError("the interleaved schedule takes model as a list of model chunks (one per virtual stage)")
    if not isinstance(data_iterator, list) or len(data_iterator) != len(model):
        raise ValueError(f"the interleaved schedule takes data_iterator as a list of one iterator per model "
                         f"chunk ({len(model)}), got {type(data_iterator).__name__}"
                         f"{'' if not isinstance(data_iterator, list) else ' of ' + str(len(data_iterator))}")
    return model, data_iterator


def forward_backward_pipelining_with_interleaving(
        *, forward_step_func, data_iterator: Union[Iterator, List[Iterator]], model, num_microbatches: int,
        seq_length: int, micro_batch_size: int, decoder_seq_length: Optional[int] = None, forward_only: bool = False,
        collect_non_loss_data: bool = False, first_val_step: Optional[bool] = None, adjust_tensor_shapes_fn=None,
        p2p_communicator=None, pg_collection=None, force_all_reduce: Optional[bool] = False,
        hooks: Optional[ScheduleHooks] = None):
    """Run the step through this rank's model chunks (``model[c]`` is virtual stage c, fed by
    ``data_iterator[c]``); returns the loss dicts on the last stage, [] elsewhere.

    forward_step gets ``vp_stage=c``; the first stage's chunk 0 reads the data, the last stage's
    last chunk applies the loss. ``parallel_state``'s virtual rank is set to the running chunk (for
    callers that read it) and restored at the end. Hooks: ``no_sync`` around every backward but each
    chunk's last (one context for all chunks), ``param_sync(params)`` before a chunk's first
    forward, ``grad_sync(params)`` after a chunk's last backward, ``scale_loss`` on the loss, then
    ``finalize_grads(model, num_tokens, ...)`` as in forward_backward_no_pipelining.
    """
    reject_unsupported("forward_backward_pipelining_with_interleaving", adjust_tensor_shapes_fn=adjust_tensor_shapes_fn)
    model, data_iterator = _chunks(model, data_iterator)
    config = get_model_config(model[0])
    hooks = hooks if hooks is not None else ScheduleHooks.from_config(config)
    comm, tp_group, cp_group = pipeline_groups(config, pg_collection, p2p_communicator)
    p, rank, v = comm.pp_group.size(), comm.pp_group.rank(), len(model)
    group_size = config.microbatch_group_size_per_vp_stage or p
    check_interleaved_schedule(config, p, v, num_microbatches, group_size)
    (shape,) = get_tensor_shapes(seq_length=seq_length, micro_batch_size=micro_batch_size,
                                 decoder_seq_length=decoder_seq_length, config=config, tp_group=tp_group,
                                 cp_group=cp_group)
    cp_size = get_pg_size(cp_group)
    store: List = []
    tokens = new_token_count()
    received_inputs = [deque() for _ in model]   # activations that arrived, per chunk, in micro-batch order
    received_grads = [deque() for _ in model]    # gradients of outputs that arrived
    inputs, outputs = [deque() for _ in model], [deque() for _ in model]  # kept for backward
    backwards_left = [num_microbatches] * v
    window = GradSyncWindow(hooks.no_sync)
    virtual_rank_before = parallel_state.get_virtual_pipeline_model_parallel_rank()
    if config.timers is not None:
        config.timers("forward-backward", log_level=1).start(barrier=config.barrier_with_L1_time)

    def forward(unit: Unit):
        nonlocal tokens
        c = unit.chunk
        parallel_state.set_virtual_pipeline_model_parallel_rank(c)
        if unit.microbatch == 0 and hooks.param_sync is not None and not forward_only:
            hooks.param_sync(model[c].parameters())
        input_tensor = None if comm.is_pp_first_stage and c == 0 else received_inputs[c].popleft()
        output, num_tokens = forward_step(
            forward_step_func, data_iterator[c], model[c], num_microbatches, input_tensor, store, config, cp_size,
            collect_non_loss_data,
            is_first_microbatch=check_first_val_step(first_val_step, forward_only, unit.microbatch == 0),
            current_microbatch=unit.microbatch, vp_stage=c, is_last_stage=comm.is_pp_last_stage and c == v - 1)
        tokens = add_tokens(tokens, num_tokens)
        if not forward_only:
            inputs[c].append(input_tensor)
            # Every output but the loss is sent on: only its autograd node is needed from here on.
            is_loss = comm.is_pp_last_stage and c == v - 1
            outputs[c].append(output if is_loss else output_for_backward(output, config.deallocate_pipeline_outputs))
        return output

    def backward(unit: Unit):
        c = unit.chunk
        parallel_state.set_virtual_pipeline_model_parallel_rank(c)
        output_tensor_grad = None if comm.is_pp_last_stage and c == v - 1 else received_grads[c].popleft()
        chunk_done = backwards_left[c] == 1
        if chunk_done:
            window.resume()  # this chunk's last backward reduces its gradients
        input_tensor_grad = backward_step(inputs[c].popleft(), outputs[c].popleft(), output_tensor_grad, None,
                                          config, hooks)
        backwards_left[c] -= 1
        if chunk_done:
            if hooks.grad_sync is not None:
                hooks.grad_sync(model[c].parameters())
            if any(backwards_left):
                window.suspend()
        return input_tensor_grad

    with torch.no_grad() if forward_only else contextlib.nullcontext():
        if not forward_only:
            window.suspend()
        for slot in interleaved_plan(p, rank, num_microbatches, v, group_size, forward_only):
            output = forward(slot.forward) if slot.forward is not None else None
            input_tensor_grad = backward(slot.backward) if slot.backward is not None else None
            if not slot.exchanges:
                continue
            received, received_grad = comm.send_forward_backward_recv_forward_backward(
                output if slot.send_next else None, input_tensor_grad if slot.send_prev else None,
                slot.recv_prev is not None, slot.recv_next is not None, shape)
            output = None  # sent: the kept stand-in is all that should hold it
            if received is not None:
                received_inputs[slot.recv_prev].append(received)
            if received_grad is not None:
                received_grads[slot.recv_next].append(received_grad)
    parallel_state.set_virtual_pipeline_model_parallel_rank(virtual_rank_before)
    if not forward_only:
        window.resume()
        finalize(hooks, model, tokens, config, pg_collection, force_all_reduce)
    if config.timers is not None:
        config.timers("forward-backward").stop()
    return store
