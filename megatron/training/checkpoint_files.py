"""What a checkpoint directory holds besides the weights, and the checks of --save at start.

    <save>/iter_0000100/args.json        the run's arguments as JSON (what --use-checkpoint-args reads)
    <save>/iter_0000100/tokenizer/       copies of the tokenizer files the run was given
    <save>/iter_0000100/mp_rank_00/...   the weights (megatron/training/checkpointing.py)

A checkpoint with its tokenizer and arguments is self-contained: generation and fine-tuning need
no model or tokenizer flags, and moving the tokenizer files after training does not break it.
Files are written under a temporary name (megatron/core/temp_files.py: this host and the writer's
pid), so that a later run can remove the ones a dead process left behind, and never a live one's.
"""
import json
import os
import shutil
from typing import Dict, Optional

from megatron.core.errors import CheckpointError
from megatron.core.temp_files import temporary_path as temp_path

ARGS_FILENAME = "args.json"
TOKENIZER_DIRNAME = "tokenizer"
# Flags naming tokenizer files: copied into the checkpoint, pointed at the copies when loaded.
TOKENIZER_FILE_DESTS = ("vocab_file", "merge_file", "tokenizer_model")


def write_args_json(iteration_dir: str, saved_args: Dict) -> None:
    os.makedirs(iteration_dir, exist_ok=True)
    path = os.path.join(iteration_dir, ARGS_FILENAME)
    tmp = temp_path(path)
    with open(tmp, "w") as stream:
        json.dump(saved_args, stream, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_args_json(iteration_dir: str) -> Optional[Dict]:
    path = os.path.join(iteration_dir, ARGS_FILENAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as stream:
            return json.load(stream)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint's arguments ({error}); the file is "
                              "damaged: load another checkpoint with --ckpt-step N") from None


def copy_tokenizer_files(args, iteration_dir: str) -> Dict[str, str]:
    """Copy the files the tokenizer flags name into ``iteration_dir/tokenizer``; returns
    {dest: path relative to iteration_dir}. A Hugging Face hub name (no local path) is not copied."""
    copied = {}
    target_dir = os.path.join(iteration_dir, TOKENIZER_DIRNAME)
    for dest in TOKENIZER_FILE_DESTS:
        source = getattr(args, dest)
        if not source or not os.path.exists(source):
            continue
        name = os.path.basename(os.path.normpath(source))
        target = os.path.join(target_dir, name)
        tmp = temp_path(target)
        os.makedirs(target_dir, exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
        copied[dest] = os.path.join(TOKENIZER_DIRNAME, name)
    return copied


def checkpoint_bytes(num_params: int, param_bytes: int, with_optimizer: bool, separate_master: bool) -> int:
    """Bytes one checkpoint takes for ``num_params`` parameters (all ranks together): the weights,
    and with the optimizer Adam's two fp32 moments plus the fp32 master copy when it is separate."""
    per_param = param_bytes + ((8 + (4 if separate_master else 0)) if with_optimizer else 0)
    return num_params * per_param


def check_save_directory(save: str, needed_bytes: int) -> None:
    """--save must be a writable directory (made if missing) with room for one checkpoint."""
    if os.path.exists(save) and not os.path.isdir(save):
        raise CheckpointError(f"--save {save}: expected a directory, found a file; give a directory path")
    try:
        os.makedirs(save, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"--save {save}: cannot create the directory ({error.strerror}); give a path "
                              "you can write to") from None
    probe = temp_path(os.path.join(save, ".write-test"))
    try:
        with open(probe, "w") as stream:
            stream.write("ok")
        os.remove(probe)
    except OSError as error:
        raise CheckpointError(f"--save {save}: the directory is not writable ({error.strerror}); fix its "
                              "permissions or give another --save") from None
    free = shutil.disk_usage(save).free
    if free < needed_bytes:
        raise CheckpointError(f"--save {save}: {free / 2**30:.2f} GiB free, but one checkpoint of this model "
                              f"takes about {needed_bytes / 2**30:.2f} GiB; free some space or give another "
                              "--save (--no-save-optim makes checkpoints smaller)")
