"""--profile: a torch-profiler trace (--use-pytorch-profiler) or an nsys capture window on CUDA."""
import torch
import torch.distributed as dist

from megatron.core import device


class Profiler:
    def __init__(self, args):
        rank = dist.get_rank() if dist.is_initialized() else 0
        self.enabled = bool(args.profile) and rank in (args.profile_ranks or [0])
        self.start, self.end = args.profile_step_start, args.profile_step_end
        self.use_torch = args.use_pytorch_profiler
        self.trace_dir = args.tensorboard_dir or "profile"
        self.prof = None
        if self.enabled and self.use_torch:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if device.on_cuda():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(
                activities=activities,
                schedule=torch.profiler.schedule(wait=max(self.start - 1, 0), warmup=1 if self.start > 0 else 0,
                                                 active=self.end - self.start, repeat=1),
                on_trace_ready=torch.profiler.tensorboard_trace_handler(self.trace_dir),
                record_shapes=True, with_stack=True)
            self.prof.start()

    def step_start(self, iteration: int) -> None:
        if self.enabled and not self.use_torch and iteration == self.start and device.on_cuda():
            torch.cuda.cudart().cudaProfilerStart()

    def step_end(self, iteration: int) -> None:
        if not self.enabled:
            return
        if self.prof is not None:
            self.prof.step()
        elif iteration == self.end and device.on_cuda():
            torch.cuda.cudart().cudaProfilerStop()

    def close(self) -> None:
        if self.prof is not None:
            self.prof.stop()
            self.prof = None
