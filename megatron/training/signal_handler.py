"""--exit-signal-handler: on SIGTERM, finish the current iteration, save, and exit cleanly."""
import signal

import torch
import torch.distributed as dist

from megatron.core import device


class DistributedSignalHandler:
    def __init__(self, sig: int = signal.SIGTERM):
        self.sig = sig
        self._received = False
        self._previous = None

    def signals_received(self):
        """Whether each rank received the signal (all ranks take part in the exchange)."""
        flag = torch.tensor([int(self._received)], dtype=torch.int32, device=device.current_device())
        if dist.is_initialized() and dist.get_world_size() > 1:
            flags = [torch.zeros_like(flag) for _ in range(dist.get_world_size())]
            dist.all_gather(flags, flag)
            return [bool(f.item()) for f in flags]
        return [bool(flag.item())]

    def __enter__(self):
        self._received = False
        self._previous = signal.getsignal(self.sig)

        def handler(signum, frame):
            self._received = True
        signal.signal(self.sig, handler)
        return self

    def __exit__(self, *exc):
        signal.signal(self.sig, self._previous)
        return False
