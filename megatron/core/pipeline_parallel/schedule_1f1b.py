"""The 1F1B pipeline schedule (one model chunk per rank): Megatron Core's
``forward_backward_pipelining_without_interleaving``.

Stage r of p runs min(p - r - 1, M) warm-up forwards, then alternates one forward with one
backward, then runs the remaining backwards. At most p - r micro-batches are in flight on stage r
(forwarded, not yet backwarded), however many micro-batches the step has: that bounds the
activation memory. Each exchange sends and receives in one batched call (see p2p_communication).
"""
import itertools
from collections import deque
from typing import Iterator, List, Optional, Union

import torch

from megatron.core.pipeline_parallel.hooks import ScheduleHooks
from megatron.core.pipeline_parallel.schedule_common import (
    GradSyncWindow, add_tokens, finalize, get_tensor_shapes, new_token_count, output_for_backward, pipeline_groups)
from megatron.core.pipeline_parallel.steps import backward_step, check_first_val_step, forward_step
from megatron.core.utils import get_model_config, get_pg_size, reject_unsupported


def _one_chunk(model, data_iterator):
    if isinstance(model, list):
        if len(model) != 1:
            raise ValueError(f"the 1F1B schedule runs one model chunk per rank, got {len(model)}; model chunks "
                             "(virtual stages, --num-layers-per-virtual-pipeline-stage) take the interleaved schedule")
        model = model[0]
    if isinstance(data_iterator, list):
        data_iterator = data_iterator[0]
    return model, data_iterator


def forward_backward_pipelining_without_interleaving(
        *, forward_step_func, data_iterator: Union[Iterator, List[Iterator]], model, num_microbatches: int,
        seq_length: int, micro_batch_size: int, decoder_seq_length: Optional[int] = None, forward_only: bool = False,
        collect_non_loss_data: bool = False, first_val_step: Optional[bool] = None, adjust_tensor_shapes_fn=None,
        p2p_communicator=None, pg_collection=None, force_all_reduce: Optional[bool] = False,
        hooks: Optional[ScheduleHooks] = None):
    """Run the step's micro-batches through this rank's pipeline stage; returns the loss dicts on
    the last stage, [] elsewhere.

    The activations sent are ``get_tensor_shapes(...)``; the groups come from ``pg_collection``
    (default: the global layout's), the exchanges from ``p2p_communicator`` (default: one over the
    pp group). ``forward_only`` runs the forwards under ``torch.no_grad()`` and keeps nothing.
    Hooks: ``no_sync`` around every backward but the last, ``scale_loss`` on the last stage's
    loss, ``grad_sync(params)`` after the last backward, then ``finalize_grads`` as in
    forward_backward_no_pipelining (num_tokens is 0 on stages without the loss).
    """
    reject_unsupported("forward_backward_pipelining_without_interleaving", adjust_tensor_shapes_fn=adjust_tensor_shapes_fn)
    model, data_iterator = _one_chunk(model, data_iterator)
    config = get_model_config(model)
    hooks = hooks if hooks is not None else ScheduleHooks.from_config(config)
    comm, tp_group, cp_group = pipeline_groups(config, pg_collection, p2p_communicator)
    (shape,) = get_tensor_shapes(seq_length=seq_length, micro_batch_size=micro_batch_size,
                                 decoder_seq_length=decoder_seq_length, config=config, tp_group=tp_group,
                                 cp_group=cp_group)
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches must be at least 1, got {num_microbatches}")
    first, last = comm.is_pp_first_stage, comm.is_pp_last_stage
    cp_size = get_pg_size(cp_group)
    store: List = []
    tokens = new_token_count()
    counter = itertools.count()
    inputs, outputs = deque(), deque()  # the micro-batches in flight, oldest first
    window = GradSyncWindow(hooks.no_sync)
    if config.timers is not None:
        config.timers("forward-backward", log_level=1).start(barrier=config.barrier_with_L1_time)

    def forward(input_tensor):
        nonlocal tokens
        i = next(counter)
        output, num_tokens = forward_step(
            forward_step_func, data_iterator, model, num_microbatches, input_tensor, store, config, cp_size,
            collect_non_loss_data, is_first_microbatch=check_first_val_step(first_val_step, forward_only, i == 0),
            current_microbatch=i, is_last_stage=last)
        tokens = add_tokens(tokens, num_tokens)
        return output

    def keep(input_tensor, output):
        inputs.append(input_tensor)
        # Once sent, only the output's autograd node is needed (the last stage's output is the loss).
        outputs.append(output if last else output_for_backward(output, config.deallocate_pipeline_outputs))

    def backward(output_tensor_grad):
        return backward_step(inputs.popleft(), outputs.popleft(), output_tensor_grad, None, config, hooks)

    if forward_only:
        with torch.no_grad():
            for _ in range(num_microbatches):
                comm.send_forward(forward(comm.recv_forward(shape, first)), last)
    else:
        warmup = min(comm.pp_group.size() - comm.pp_group.rank() - 1, num_microbatches)
        steady = num_microbatches - warmup
        window.suspend()
        for _ in range(warmup):
            input_tensor = comm.recv_forward(shape, first)
            output = forward(input_tensor)
            comm.send_forward(output, last)
            keep(input_tensor, output)
            del output  # (the kept stand-in is all that should hold it)
        input_tensor = comm.recv_forward(shape, first) if steady > 0 else None
        for i in range(steady):
            final = i == steady - 1
            output = forward(input_tensor)
            output_tensor_grad = comm.send_forward_recv_backward(output, shape, last)
            keep(input_tensor, output)
            del output
            if final and warmup == 0:
                window.resume()  # the step's last backward
            input_tensor_grad = backward(output_tensor_grad)
            if final:
                comm.send_backward(input_tensor_grad, first)
            else:
                input_tensor = comm.send_backward_recv_forward(input_tensor_grad, shape, first)
        for i in range(warmup):
            if i == warmup - 1:
                window.resume()
            comm.send_backward(backward(comm.recv_backward(shape, last)), first)
        window.resume()
        if hooks.grad_sync is not None:
            hooks.grad_sync(model.parameters())
        finalize(hooks, [model], tokens, config, pg_collection, force_all_reduce)
    if config.timers is not None:
        config.timers("forward-backward").stop()
    return store
