"""Run the real pretrain() driver in-process and capture what each train_step returned.

Used by the driver tests: several runs can happen in one (spawned) process, since the global state is
torn down after each with destroy_megatron().
"""
import contextlib
import io
import os
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def run_pretrain(argv: List[str], finalize_hook=None) -> Dict[str, list]:
    """Train with ``argv``; return per-iteration losses, grad norms, skipped flags, LRs, loss scales.

    ``finalize_hook(model_chunks, iteration)`` (optional) runs right after the gradients are final,
    before the optimizer step (used to inject an overflow).
    """
    from megatron.training.recipes import gpt as pretrain_gpt
    from megatron.core.enums import ModelType
    from megatron.training import training
    from megatron.training.initialize import destroy_megatron

    record = {"loss": [], "grad_norm": [], "skipped": [], "lr": [], "loss_scale": [], "stdout": ""}
    real_step, real_finalize = training.train_step, training.finalize_model_grads

    current = {"iteration": 0}  # the iteration train_step is running (1-based), for finalize_hook

    def step(forward_step_func, data_iterator, model, optimizer, scheduler, config, state=None):
        current["iteration"] = (state.iteration if state is not None else 0) + 1
        record["lr"].append(optimizer.param_groups[0]["lr"])
        losses, skipped, grad_norm, num_zeros = real_step(forward_step_func, data_iterator, model, optimizer,
                                                          scheduler, config, state)
        record["loss"].append(losses.get("lm loss"))
        record["grad_norm"].append(grad_norm)
        record["skipped"].append(skipped)
        record["loss_scale"].append(float(optimizer.get_loss_scale()))
        return losses, skipped, grad_norm, num_zeros

    def finalize(model, num_tokens=None, *rest):
        real_finalize(model, num_tokens, *rest)
        if finalize_hook is not None:
            finalize_hook(model, current["iteration"])

    out = io.StringIO()
    training.train_step, training.finalize_model_grads = step, finalize
    try:
        with contextlib.redirect_stdout(out):
            pretrain_gpt.pretrain(pretrain_gpt.train_valid_test_datasets_provider, pretrain_gpt.model_provider,
                                  ModelType.encoder_or_decoder, pretrain_gpt.forward_step, argv=argv)
    except SystemExit as stop:  # the exit flags end the run with sys.exit(0), as Megatron does
        record["exit_code"] = stop.code
    finally:
        training.train_step, training.finalize_model_grads = real_step, real_finalize
        destroy_megatron()
    record["stdout"] = out.getvalue()
    return record


def full_tensors_by_global_name(model_chunks, pick):
    """``pick(param)`` of every parameter of this rank's model chunks, as the full tensor (the
    tensor-parallel shards all-gathered: collective over the TP group) under its layout-independent
    name; a tied output layer is filed under the name of the embedding it copies. Yields
    (global name, pipeline rank, tensor) on tensor-parallel rank 0, nothing elsewhere."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.param_layout import param_layouts
    from megatron.core.utils import unwrap_model
    tp_group, tp = ps.get_tensor_model_parallel_group(), ps.get_tensor_model_parallel_world_size()
    for chunk in model_chunks:
        inner = unwrap_model(chunk)
        layouts = param_layouts(inner)
        for name, param in inner.named_parameters():
            local = pick(param).contiguous()
            shards = [torch.empty_like(local) for _ in range(tp)]
            dist.all_gather(shards, local, group=tp_group)
            if ps.get_tensor_model_parallel_rank() == 0:
                global_name = layouts[name].tied_to or inner.global_param_name(name)
                yield global_name, ps.get_pipeline_model_parallel_rank(), layouts[name].full_from_shards(shards).clone()
