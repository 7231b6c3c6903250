"""Activations and their gradients between neighbouring pipeline stages (Megatron Core's P2PCommunicator).

Every exchange posts its sends and receives together and waits for all of them: batched
(``torch.distributed.batch_isend_irecv``, ``config.batch_p2p_comm``, the default) or as single
isend/irecv calls. Shapes are known in advance (the schedules pass them), so no shape is exchanged
first; ``config.variable_seq_lengths`` is refused. Tensors travel in ``config.pipeline_dtype``
(``params_dtype`` when None); receive buffers live on ``megatron.core.device.current_device()``.

Order of the operations inside one exchange: activations (send to next, receive from previous)
before gradients (send to previous, receive from next), on every rank. Messages between two ranks
are matched in the order they are posted, so this order keeps an activation from landing in a
gradient buffer when the previous and the next rank are the same one (two stages joined in a ring,
the interleaved schedule's wrap-around). Each direction also has its own tag where the backend
honours tags (gloo).
"""
import contextlib
from typing import List, Optional, Tuple, Union

import torch
import torch.distributed as dist

from megatron.core import device
from megatron.core.errors import ConfigError
from megatron.core.utils import reject_unsupported

Shape = Union[List[int], Tuple[int, ...], torch.Size]
_FORWARD_TAG, _BACKWARD_TAG = 0, 1


def _is_single_shape(shapes) -> bool:
    return isinstance(shapes, torch.Size) or (
        isinstance(shapes, (list, tuple)) and len(shapes) > 0 and all(isinstance(d, int) for d in shapes))


class P2PCommunicator:
    """Send and receive between this rank and the previous/next rank of ``pp_group``.

    The previous and next ranks wrap around (the last stage's next is the first stage); the 1F1B
    methods never use the wrap-around link because they do nothing on the first/last stage, while
    the interleaved schedule's ring uses it for the hand-over between model chunks.
    """

    def __init__(self, pp_group, config):
        reject_unsupported("P2PCommunicator", {"variable_seq_lengths": False},
                           variable_seq_lengths=config.variable_seq_lengths)
        self.pp_group = pp_group
        self.config = config
        size, rank = self.pp_group.size(), self.pp_group.rank()
        self.next_rank: int = dist.get_global_rank(pp_group, (rank + 1) % size)
        self.prev_rank: int = dist.get_global_rank(pp_group, (rank - 1) % size)
        self.virtual_pipeline_model_parallel_size = config.virtual_pipeline_model_parallel_size

    @property
    def is_pp_first_stage(self) -> bool:
        return self.pp_group.rank() == 0

    @property
    def is_pp_last_stage(self) -> bool:
        return self.pp_group.rank() == self.pp_group.size() - 1

    @property
    def dtype(self) -> torch.dtype:
        """What activations and gradients travel as."""
        return self.config.pipeline_dtype or self.config.params_dtype

    # ---- the one exchange every method below is made of ------------------------------------------
    def _timer(self, name: str):
        timers = self.config.timers
        if timers is None:
            return contextlib.nullcontext()
        timer = timers(name, log_level=2)

        @contextlib.contextmanager
        def timed():
            timer.start()
            try:
                yield
            finally:
                timer.stop()
        return timed()

    def _check_sent(self, tensor: Optional[torch.Tensor], what: str) -> Optional[torch.Tensor]:
        if tensor is None:
            return None
        if tensor.dtype != self.dtype:
            raise ConfigError(f"P2PCommunicator: the {what} to send is {tensor.dtype} but the stages exchange "
                            f"{self.dtype} (config.pipeline_dtype, else params_dtype): the receiver would read "
                            "garbage; make the stage output that dtype or set config.pipeline_dtype to match")
        return tensor.detach().contiguous()

    def _buffer(self, shape: Optional[Shape], requires_grad: bool) -> torch.Tensor:
        if shape is None:
            raise ValueError("P2PCommunicator: a receive needs its tensor_shape, commonly "
                             "(seq_length, micro_batch_size, hidden_size)")
        return torch.empty(tuple(shape), dtype=self.dtype, device=device.current_device(),
                           requires_grad=requires_grad)

    def _communicate(self, *, tensor_send_next: Optional[torch.Tensor], tensor_send_prev: Optional[torch.Tensor],
                     recv_prev: bool, recv_next: bool, tensor_shape: Optional[Shape]
                     ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """One exchange with both neighbours; returns (received from previous, received from next).

        A received activation requires grad when autograd is recording (it will be backpropagated
        through); a received gradient never does.
        """
        send_next = self._check_sent(tensor_send_next, "activation")
        send_prev = self._check_sent(tensor_send_prev, "gradient")
        recv_prev_buf = self._buffer(tensor_shape, torch.is_grad_enabled()) if recv_prev else None
        recv_next_buf = self._buffer(tensor_shape, False) if recv_next else None
        # (operation, tensor, peer, tag) in the order explained in the module docstring.
        ops = [(dist.isend, send_next, self.next_rank, _FORWARD_TAG),
               (dist.irecv, recv_prev_buf, self.prev_rank, _FORWARD_TAG),
               (dist.isend, send_prev, self.prev_rank, _BACKWARD_TAG),
               (dist.irecv, recv_next_buf, self.next_rank, _BACKWARD_TAG)]
        ops = [op for op in ops if op[1] is not None]
        if not ops:
            return None, None
        if self.config.batch_p2p_comm:
            requests = dist.batch_isend_irecv([dist.P2POp(fn, t, peer, self.pp_group, tag) for fn, t, peer, tag in ops])
        else:
            requests = [fn(t, peer, group=self.pp_group, tag=tag) for fn, t, peer, tag in self._unbatched_order(ops)]
        for request in requests:
            request.wait()
        return recv_prev_buf, recv_next_buf

    def _unbatched_order(self, ops):
        """Single isend/irecv calls: even stages send first, odd stages receive first, so two
        neighbours never both wait in a blocking send (the per-peer order stays the batched one)."""
        if self.pp_group.rank() % 2 == 0:
            return ops
        receives = [op for op in ops if op[0] is dist.irecv]
        sends = [op for op in ops if op[0] is dist.isend]
        return receives + sends

    # ---- Megatron Core's methods ------------------------------------------------------------------
    def _each(self, tensors, shapes, run):
        """Megatron's methods take one tensor/shape or lists of them; apply ``run`` to each pair."""
        single = _is_single_shape(shapes) or shapes is None
        shapes = [shapes] if single else list(shapes)
        if not isinstance(tensors, list):
            tensors = [tensors] * len(shapes)
        results = [run(t, s) for t, s in zip(tensors, shapes)]
        return results[0] if single else results

    def recv_forward(self, tensor_shapes, is_first_stage: bool):
        """The activation from the previous stage (None on the first stage)."""
        def run(_, shape):
            if is_first_stage:
                return None
            with self._timer("forward-recv"):
                return self._communicate(tensor_send_next=None, tensor_send_prev=None, recv_prev=True,
                                         recv_next=False, tensor_shape=shape)[0]
        return self._each(None, tensor_shapes, run)

    def recv_backward(self, tensor_shapes, is_last_stage: bool):
        """The gradient of this stage's output, from the next stage (None on the last stage)."""
        def run(_, shape):
            if is_last_stage:
                return None
            with self._timer("backward-recv"):
                return self._communicate(tensor_send_next=None, tensor_send_prev=None, recv_prev=False,
                                         recv_next=True, tensor_shape=shape)[1]
        return self._each(None, tensor_shapes, run)

    def send_forward(self, output_tensors, is_last_stage: bool) -> None:
        """Send this stage's output to the next stage (nothing on the last stage)."""
        if is_last_stage:
            return
        for tensor in output_tensors if isinstance(output_tensors, list) else [output_tensors]:
            with self._timer("forward-send"):
                self._communicate(tensor_send_next=tensor, tensor_send_prev=None, recv_prev=False,
                                  recv_next=False, tensor_shape=None)

    def send_backward(self, input_tensor_grads, is_first_stage: bool) -> None:
        """Send the gradient of this stage's input to the previous stage (nothing on the first)."""
        if is_first_stage:
            return
        for tensor in input_tensor_grads if isinstance(input_tensor_grads, list) else [input_tensor_grads]:
            with self._timer("backward-send"):
                self._communicate(tensor_send_next=None, tensor_send_prev=tensor, recv_prev=False,
                                  recv_next=False, tensor_shape=None)

    def send_forward_recv_backward(self, output_tensors, tensor_shapes, is_last_stage: bool):
        """Send the output forward and receive its gradient back, in one exchange with the next stage."""
        def run(tensor, shape):
            if is_last_stage:
                return None
            with self._timer("forward-send-backward-recv"):
                return self._communicate(tensor_send_next=tensor, tensor_send_prev=None, recv_prev=False,
                                         recv_next=True, tensor_shape=shape)[1]
        return self._each(output_tensors, tensor_shapes, run)

    def send_backward_recv_forward(self, input_tensor_grads, tensor_shapes, is_first_stage: bool):
        """Send the input gradient back and receive the next activation, in one exchange with the previous stage."""
        def run(tensor, shape):
            if is_first_stage:
                return None
            with self._timer("backward-send-forward-recv"):
                return self._communicate(tensor_send_next=None, tensor_send_prev=tensor, recv_prev=True,
                                         recv_next=False, tensor_shape=shape)[0]
        return self._each(input_tensor_grads, tensor_shapes, run)

    def send_forward_recv_forward(self, output_tensor: Optional[torch.Tensor], recv_prev: bool,
                                  tensor_shape: Shape, overlap_p2p_comm: bool = False):
        """Interleaved schedule: send to the next rank (None: nothing) and receive from the previous."""
        reject_unsupported("P2PCommunicator.send_forward_recv_forward", {"overlap_p2p_comm": False},
                           overlap_p2p_comm=overlap_p2p_comm)
        with self._timer("forward-send-forward-recv"):
            return self._communicate(tensor_send_next=output_tensor, tensor_send_prev=None, recv_prev=recv_prev,
                                     recv_next=False, tensor_shape=tensor_shape)[0]

    def send_backward_recv_backward(self, input_tensor_grad: Optional[torch.Tensor], recv_next: bool,
                                    tensor_shape: Shape, overlap_p2p_comm: bool = False):
        """Interleaved schedule: send a gradient to the previous rank and receive one from the next."""
        reject_unsupported("P2PCommunicator.send_backward_recv_backward", {"overlap_p2p_comm": False},
                           overlap_p2p_comm=overlap_p2p_comm)
        with self._timer("backward-send-backward-recv"):
            return self._communicate(tensor_send_next=None, tensor_send_prev=input_tensor_grad, recv_prev=False,
                                     recv_next=recv_next, tensor_shape=tensor_shape)[1]

    def send_forward_backward_recv_forward_backward(self, output_tensor: Optional[torch.Tensor],
                                                    input_tensor_grad: Optional[torch.Tensor], recv_prev: bool,
                                                    recv_next: bool, tensor_shape: Shape):
        """Interleaved schedule: both directions in one exchange; returns (input_tensor, output_tensor_grad)."""
        with self._timer("forward-backward-send-forward-backward-recv"):
            return self._communicate(tensor_send_next=output_tensor, tensor_send_prev=input_tensor_grad,
                                     recv_prev=recv_prev, recv_next=recv_next, tensor_shape=tensor_shape)

