"""Save and resume training exactly: model, fp32 master weights, optimizer, LR schedule, loss scale,
RNG streams, iteration and consumed samples.

Layout (Megatron's "torch" naming, our own file contents):
    <save>/latest_checkpointed_iteration.txt
    <save>/iter_0000100/mp_rank_00/model_optim_rng.pt          (mp_rank_TT_PPP with pipeline stages)
Each tensor/pipeline rank's data-parallel rank 0 writes its file under a temporary name and renames
it; rank 0 updates the tracker only after every file is in place, so an interrupted save never
replaces the last good checkpoint. Files hold only tensors and plain Python values (no pickled
argument namespace), and are read with ``torch.load(weights_only=True)``.
"""
import os
import random
import shutil
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
from megatron.core.errors import CheckpointError
from megatron.core.temp_files import remove_dead_temporaries
from megatron.core.utils import no_effect, reject_unsupported
from megatron.training.arguments.derived import set_derived
from megatron.training.checkpoint_files import (
    copy_tokenizer_files,
    read_args_json,
    temp_path,
    write_args_json,
)
from megatron.training.collective_errors import fail_together
from megatron.training.global_vars import get_args
from megatron.training.train_state import TrainState
from megatron.training.utils import finish_param_sync, print_rank_0, unwrap_model

CHECKPOINT_VERSION = 3.0
TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
# Arguments that fix the model's shapes: a checkpoint made with other values cannot be loaded as is.
_ARCHITECTURE_ARGS = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "kv_channels",
                      "num_query_groups", "group_query_attention", "max_position_embeddings",
                      "position_embedding_type", "normalization", "swiglu", "untie_embeddings_and_output_weights",
                      "add_bias_linear", "add_qkv_bias", "qk_layernorm", "padded_vocab_size")
_LAYOUT_ARGS = ("tensor_model_parallel_size", "pipeline_model_parallel_size",
                "virtual_pipeline_model_parallel_size", "decoder_first_pipeline_num_layers",
                "decoder_last_pipeline_num_layers")


def _model_keys(chunks) -> List[str]:
    """Megatron's keys: "model", or "model0", "model1", ... for the chunks of virtual pipeline stages."""
    return ["model"] if len(chunks) == 1 else [f"model{i}" for i in range(len(chunks))]


def get_checkpoint_tracker_filename(checkpoints_path: str) -> str:
    return os.path.join(checkpoints_path, TRACKER_FILENAME)


def get_checkpoint_name(checkpoints_path: str, iteration: int, release: bool = False,
                        tensor_rank: Optional[int] = None, pipeline_rank: Optional[int] = None,
                        pipeline_parallel: Optional[bool] = None) -> str:
    directory = "release" if release else f"iter_{iteration:07d}"
    tp = parallel_state.get_tensor_model_parallel_rank() if tensor_rank is None else tensor_rank
    pp = parallel_state.get_pipeline_model_parallel_rank() if pipeline_rank is None else pipeline_rank
    if pipeline_parallel is None:
        pipeline_parallel = parallel_state.get_pipeline_model_parallel_world_size() > 1
    rank_dir = f"mp_rank_{tp:02d}_{pp:03d}" if pipeline_parallel else f"mp_rank_{tp:02d}"
    return os.path.join(checkpoints_path, directory, rank_dir, "model_optim_rng.pt")


def read_metadata(tracker_filename: str) -> Tuple[int, bool]:
    """(iteration, release) from the tracker file; the maximum over ranks wins, as in Megatron."""
    with open(tracker_filename) as f:
        text = f.read().strip()
    if text == "release":
        iteration, release = 0, True
    else:
        try:
            iteration, release = int(text), False
        except ValueError:
            raise CheckpointError(f"{tracker_filename}: expected an iteration number or 'release', got {text!r}; "
                                  "the tracker file is damaged: write the iteration to load into it, or give "
                                  "--ckpt-step N") from None
    if dist.is_initialized():
        t = torch.tensor([iteration], dtype=torch.long, device=device.current_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        iteration = int(t.item())
    return iteration, release


def _plain(value):
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "random_rng_state": random.getstate(),
        "np_rng_state": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch_rng_state": torch.get_rng_state(),
        "rng_tracker_states": get_cuda_rng_tracker().get_states(),
    }
    if device.on_cuda():
        state["cuda_rng_state"] = torch.cuda.get_rng_state()
    return state


def _restore_rng_state(state: dict) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["random_rng_state"]))
    name, keys, pos, has_gauss, cached = state["np_rng_state"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch_rng_state"])
    if device.on_cuda() and "cuda_rng_state" in state:
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


def _atomic_save(obj, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_path(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: str, text: str) -> None:
    tmp = temp_path(path)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_checkpoint(iteration: int, model, optimizer, opt_param_scheduler,
                    num_floating_point_operations_so_far: float = 0, checkpointing_context=None,
                    pipeline_rank=None, expert_rank=None, tensor_rank=None, pipeline_parallel=None,
                    expert_parallel=None, non_persistent_ckpt: bool = False, train_data_iterator=None,
                    preprocess_common_state_dict_fn=None, release: bool = False,
                    train_state: Optional[TrainState] = None) -> None:
    """Save at ``iteration`` under --save; ``train_state`` (where the run is) defaults to one holding
    only the iteration and FLOPs. Megatron's other arguments are accepted at their defaults only;
    ``checkpointing_context`` (Megatron's cache for its async and persistent savers) is unused here."""
    reject_unsupported("save_checkpoint", {"non_persistent_ckpt": False, "release": False},
                       pipeline_rank=pipeline_rank, expert_rank=expert_rank, tensor_rank=tensor_rank,
                       pipeline_parallel=pipeline_parallel, expert_parallel=expert_parallel,
                       non_persistent_ckpt=non_persistent_ckpt, train_data_iterator=train_data_iterator,
                       preprocess_common_state_dict_fn=preprocess_common_state_dict_fn, release=release)
    no_effect("Megatron's cache for its async and persistent savers; nothing to cache here", checkpointing_context)
    args = get_args()
    if train_state is None:
        train_state = TrainState(iteration=iteration,
                                 floating_point_operations_so_far=num_floating_point_operations_so_far)
    chunks = model if isinstance(model, list) else [model]
    finish_param_sync(chunks)
    print_rank_0(f"saving checkpoint at iteration {iteration:7d} to {args.save}")
    save_optim = not args.no_save_optim and optimizer is not None
    # The distributed optimizer's state is sharded: gathering it is collective over data parallelism.
    sharded_optim = save_optim and getattr(optimizer, "is_sharded", False)
    optim_state = optimizer.state_dict() if sharded_optim else None
    saved_args = {k: _plain(v) for k, v in vars(args).items() if k not in ("startup_notes", "user_set_options")}
    if not dist.is_initialized() or dist.get_rank() == 0:
        # The checkpoint carries its arguments as JSON and its tokenizer, so that it loads without flags.
        iteration_dir = os.path.dirname(os.path.dirname(get_checkpoint_name(args.save, iteration)))
        saved_args["tokenizer_files"] = copy_tokenizer_files(args, iteration_dir)
        write_args_json(iteration_dir, saved_args)
    if parallel_state.get_data_parallel_rank() == 0:
        state = {
            "args": saved_args,
            "checkpoint_version": CHECKPOINT_VERSION,
            "iteration": iteration,
            **{key: unwrap_model(chunk).state_dict() for key, chunk in zip(_model_keys(chunks), chunks)},
            "num_floating_point_operations_so_far": num_floating_point_operations_so_far,
            "train_state": train_state.state_dict(),
        }
        if save_optim:
            state["optimizer"] = optim_state if sharded_optim else optimizer.state_dict()
            if opt_param_scheduler is not None:
                state["opt_param_scheduler"] = opt_param_scheduler.state_dict()
        if not args.no_save_rng:
            state["rng_state"] = [_rng_state()]
        _atomic_save(state, get_checkpoint_name(args.save, iteration))
    if dist.is_initialized():
        dist.barrier()
    if not dist.is_initialized() or dist.get_rank() == 0:
        _atomic_write_text(get_checkpoint_tracker_filename(args.save), str(iteration))
        _apply_retention(args.save, iteration, args.save_retain_interval)
    if dist.is_initialized():
        dist.barrier()
    print_rank_0(f"  successfully saved checkpoint at iteration {iteration:7d} to {args.save}")


def _apply_retention(save_dir: str, latest: int, retain_interval: Optional[int]) -> None:
    """--save-retain-interval: keep the latest checkpoint and every multiple of the interval."""
    if not retain_interval:
        return
    for name in os.listdir(save_dir):
        if name.startswith("iter_") and name[5:].isdigit():
            it = int(name[5:])
            if it != latest and it % retain_interval != 0:
                shutil.rmtree(os.path.join(save_dir, name), ignore_errors=True)


def _check_compatible(saved_args: dict, args, path: str) -> None:
    for key in _LAYOUT_ARGS + _ARCHITECTURE_ARGS:
        saved, current = saved_args.get(key), _plain(getattr(args, key))
        if key in saved_args and saved != current:
            what = "parallel layout" if key in _LAYOUT_ARGS else "model"
            flag = "--num-virtual-stages-per-pipeline-rank" if key == "virtual_pipeline_model_parallel_size" \
                else f"--{key.replace('_', '-')}"
            raise CheckpointError(
                f"checkpoint {path} was saved with {flag} {saved}, this run has {current}: "
                f"the {what} must match to load it (resharding to another layout is not supported yet)")


def _read_checkpoint_file(path: str, tracker: str, iteration: int) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path} is missing (tracker {tracker} names iteration {iteration}): "
                              "was it saved with another tensor/pipeline-parallel layout, or is the save "
                              "incomplete? Give --ckpt-step N for an earlier checkpoint")
    try:
        return torch.load(path, map_location=device.current_device(), weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"checkpoint file {path} cannot be read ({str(error).splitlines()[0]}): it is damaged "
                              "or truncated; load an earlier checkpoint with --ckpt-step N") from None


def load_checkpoint(model, optimizer, opt_param_scheduler, load_arg: str = "load", strict: bool = True,
                    checkpointing_context=None, skip_load_to_model_and_opt: bool = False,
                    train_state: Optional[TrainState] = None) -> Tuple[int, float]:
    """Load the latest (or --ckpt-step) checkpoint under --load; returns (iteration, flops so far)
    and sets ``train_state`` (when given) to where the saved run was (a fresh state when fine-tuning).

    Without a checkpoint there, --pretrained-checkpoint is loaded as fine-tuning weights if given;
    otherwise training starts from the initialised model (or fails with --exit-on-missing-checkpoint).
    """
    reject_unsupported("load_checkpoint", {"skip_load_to_model_and_opt": False},
                       skip_load_to_model_and_opt=skip_load_to_model_and_opt)
    no_effect("Megatron's cache for its async and persistent savers; nothing to cache here", checkpointing_context)
    args = get_args()
    load_dir = getattr(args, load_arg)
    finetune = args.finetune
    tracker = get_checkpoint_tracker_filename(load_dir) if load_dir else None
    if tracker is None or not os.path.isfile(tracker):
        pretrained = args.pretrained_checkpoint
        if pretrained and os.path.isfile(get_checkpoint_tracker_filename(pretrained)):
            load_dir, finetune, tracker = pretrained, True, get_checkpoint_tracker_filename(pretrained)
        else:
            if args.exit_on_missing_checkpoint:
                raise CheckpointError(f"--load {load_dir}: no checkpoint there ({TRACKER_FILENAME} is missing) "
                                      "and --exit-on-missing-checkpoint is set; give the --save directory of "
                                      "the run to resume")
            print_rank_0(f"WARNING: could not find a checkpoint in {load_dir} ({TRACKER_FILENAME} missing): "
                         "training starts from the initialised model")
            return 0, 0
    iteration, release = read_metadata(tracker)
    if args.ckpt_step is not None:
        iteration, release = args.ckpt_step, False
    path = get_checkpoint_name(load_dir, iteration, release)
    print_rank_0(f"loading checkpoint from {load_dir} at iteration {iteration}")
    # Each rank reads its own file: a missing or damaged one stops every rank with its name.
    state = fail_together(lambda: _read_checkpoint_file(path, tracker, iteration))
    fail_together(lambda: _check_compatible(state.get("args", {}), args, path))
    chunks = model if isinstance(model, list) else [model]
    for key, chunk in zip(_model_keys(chunks), chunks):
        unwrap_model(chunk).load_state_dict(state[key], strict=strict)

    finetune = finetune or release
    load_optim = optimizer is not None and not finetune and not args.no_load_optim and "optimizer" in state
    if load_optim:
        # The optimizer's state brings back each group's LR bounds, which the scheduler follows:
        # under --override-opt_param-scheduler the bounds built from the flags must win instead.
        bounds = [{k: g[k] for k in ("max_lr", "min_lr") if k in g} for g in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        if args.override_opt_param_scheduler:
            for group, own in zip(optimizer.param_groups, bounds):
                group.update(own)
        if opt_param_scheduler is not None and "opt_param_scheduler" in state:
            opt_param_scheduler.load_state_dict(state["opt_param_scheduler"])
    elif optimizer is not None:
        optimizer.reload_model_params()
    if not finetune and not args.no_load_rng and "rng_state" in state:
        _restore_rng_state(state["rng_state"][0])
    loaded = TrainState()
    if not finetune:
        flops = state.get("num_floating_point_operations_so_far", 0)
        if "train_state" in state:
            loaded.load_state_dict(state["train_state"])
        else:
            loaded = TrainState.from_legacy_args(state.get("args", {}), iteration, flops)
    if train_state is not None:
        train_state.load_state_dict(loaded.state_dict())
    if dist.is_initialized():
        dist.barrier()
    print_rank_0(f"  successfully loaded checkpoint from {load_dir} at iteration {loaded.iteration}")
    return loaded.iteration, loaded.floating_point_operations_so_far


# --use-checkpoint-args, Megatron's rule: sizes come from the checkpoint where the command line left
# them out; architecture switches always come from the checkpoint (the weights fix them).
_SIZES_FROM_CHECKPOINT = ("num_layers", "hidden_size", "ffn_hidden_size", "seq_length", "num_attention_heads",
                          "kv_channels", "max_position_embeddings")
_SWITCHES_FROM_CHECKPOINT = ("num_query_groups", "group_query_attention", "position_embedding_type", "rotary_base",
                             "rotary_percent", "rotary_interleaved", "add_bias_linear", "add_qkv_bias",
                             "squared_relu", "swiglu", "openai_gelu", "untie_embeddings_and_output_weights",
                             "apply_layernorm_1p", "normalization", "norm_epsilon", "qk_layernorm",
                             "apply_residual_connection_post_layernorm", "use_rope_scaling", "rope_scaling_factor",
                             "rotary_seq_len_interpolation_factor", "make_vocab_size_divisible_by")


def _latest_iteration_dir(load_dir: str):
    """(iteration directory, tracker text) of the checkpoint --load names, or (None, None)."""
    tracker = get_checkpoint_tracker_filename(load_dir)
    if not os.path.isfile(tracker):
        return None, None
    with open(tracker) as f:
        text = f.read().strip()
    name = "release" if text == "release" else f"iter_{int(text):07d}" if text.isdigit() else None
    if name is None:
        raise CheckpointError(f"{tracker}: expected an iteration number or 'release', got {text!r}")
    return os.path.join(load_dir, name), text


def _saved_args(iteration_dir: str) -> dict:
    saved = read_args_json(iteration_dir)
    if saved is not None:
        return saved
    # A checkpoint written before args.json: the arguments sit in the first weights file.
    for rank_dir in ("mp_rank_00", "mp_rank_00_000"):
        path = os.path.join(iteration_dir, rank_dir, "model_optim_rng.pt")
        if os.path.isfile(path):
            return torch.load(path, map_location="cpu", weights_only=True).get("args", {})
    raise CheckpointError(f"{iteration_dir}: no args.json and no mp_rank_00*/model_optim_rng.pt to read the "
                          "run's arguments from: is it a complete checkpoint of this project?")


def load_args_from_checkpoint(args, load_arg: str = "load"):
    """--use-checkpoint-args: take the model's shape (and with --use-mp-args-from-checkpoint-args,
    the parallel layout) from the checkpoint under --load, and its tokenizer unless the command line
    names one (--tokenizer-type): the tokenizer files are the copies saved in the checkpoint.
    Call before validation; what it sets counts as given by the user."""
    from megatron.training.arguments import options_in_group
    load_dir = getattr(args, load_arg)
    iteration_dir, _ = _latest_iteration_dir(load_dir) if load_dir else (None, None)
    if iteration_dir is None:
        print(f"WARNING: --use-checkpoint-args: no checkpoint in {load_dir}; using the command line", file=sys.stderr)
        return args
    saved = _saved_args(iteration_dir)
    user_set = set(args.user_set_options)
    forced = _SWITCHES_FROM_CHECKPOINT + (_LAYOUT_ARGS if args.use_mp_args_from_checkpoint_args else ())
    taken = {}
    for key in _SIZES_FROM_CHECKPOINT + forced:
        if saved.get(key) is not None and (key in forced or key not in user_set):
            taken[key] = saved[key]
    if "tokenizer_type" not in user_set and saved.get("tokenizer_type"):
        for option in options_in_group("tokenizer"):
            if option.dest in saved:
                taken[option.dest] = saved[option.dest]
        for dest, relative in (saved.get("tokenizer_files") or {}).items():
            taken[dest] = os.path.join(iteration_dir, relative)
    for key, value in taken.items():
        setattr(args, key, value)
    if saved.get("padded_vocab_size") is not None and "tokenizer_type" not in user_set:
        set_derived(args, "padded_vocab_size", saved["padded_vocab_size"])
    set_derived(args, "user_set_options", sorted(user_set | set(taken)))
    return args


def prepare_save_directory(args, model) -> None:
    """At start, before any training step: --save must be a writable directory with room for one
    checkpoint of this model, and the temporary files dead writers left there are removed.
    Collective: every rank raises the same error when rank 0 finds a problem."""
    from megatron.training.checkpoint_files import checkpoint_bytes, check_save_directory
    from megatron.training.collective_errors import check_on_rank_0
    chunks = model if isinstance(model, list) else [model]
    params = [p for chunk in chunks for p in chunk.parameters()]
    local = torch.tensor([sum(p.numel() for p in params)], dtype=torch.float64, device=device.current_device())
    if dist.is_initialized() and parallel_state.get_model_parallel_group() is not None:
        dist.all_reduce(local, group=parallel_state.get_model_parallel_group())
    needed = checkpoint_bytes(int(local.item()), params[0].element_size() if params else 4,
                              with_optimizer=not args.no_save_optim, separate_master=args.fp16 or args.bf16)

    def check():
        check_save_directory(args.save, needed)
        remove_dead_temporaries(args.save, log=lambda message: print(message, flush=True), recursive=True)
    check_on_rank_0(check)
