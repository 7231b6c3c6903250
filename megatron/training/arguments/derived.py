"""Values derived from the flags, declared once, and the read-only arguments namespace.

Besides the declared flags, the namespace holds only the values listed in ``DERIVED``: each is
computed once, by validation (from the flags and the launcher's environment) or by initialisation
(from what it built: the padded vocabulary needs the tokenizer). Once initialisation is done the
namespace is frozen: an assignment raises. Where a run *is* (iteration, consumed samples, FLOPs)
is not an argument: it lives in ``megatron.training.train_state.TrainState``.
"""
import argparse

# name -> what it is. Validation sets the first group; initialisation the rest.
DERIVED = {
    # from the launcher's environment
    "world_size": "number of ranks (WORLD_SIZE, 1 without torchrun)",
    "rank": "this process's global rank (RANK)",
    # from the flags
    "data_parallel_size": "world size / (tensor x pipeline x context parallel sizes)",
    "transformer_pipeline_model_parallel_size": "pipeline stages that hold transformer layers",
    "virtual_pipeline_model_parallel_size": "virtual pipeline stages per rank (None: no interleaving)",
    "params_dtype": "torch dtype of the model's parameters (--fp16 / --bf16 / fp32)",
    "variable_seq_lengths": "whether micro-batches may differ in sequence length (always False here)",
    "use_dist_ckpt": "whether --ckpt-format is a distributed format (anything but torch)",
    "user_set_options": "dests the user gave on the command line or in --config (sorted)",
    "startup_notes": "notes for the user, printed once by rank 0 at start",
    # from initialisation
    "padded_vocab_size": "the tokenizer's vocabulary padded to --make-vocab-size-divisible-by x TP",
}


class FrozenArguments(argparse.Namespace):
    """The parsed arguments after initialisation: reading works as before, writing raises."""

    def __setattr__(self, name, value):
        raise AttributeError(
            f"args.{name} = ...: the arguments are read-only once initialisation is done. Where a "
            "run is (iteration, consumed samples, FLOPs) lives in TrainState; a value derived from "
            "the flags is computed once in validation (megatron/training/arguments/derived.py "
            "lists them)")

    def __delattr__(self, name):
        raise AttributeError(f"del args.{name}: the arguments are read-only once initialisation is done")


def freeze(args: argparse.Namespace) -> argparse.Namespace:
    """Make ``args`` read-only in place (it stays an argparse.Namespace with the same values)."""
    if not isinstance(args, FrozenArguments):
        args.__class__ = FrozenArguments
    return args


def is_frozen(args) -> bool:
    return isinstance(args, FrozenArguments)


def set_derived(args: argparse.Namespace, name: str, value) -> None:
    """Set the derived value ``name`` (declared in DERIVED) before the arguments are frozen."""
    if name not in DERIVED:
        raise KeyError(f"{name!r} is not a declared derived value; declare it in DERIVED "
                       "(megatron/training/arguments/derived.py) with what it is")
    if is_frozen(args):
        raise AttributeError(f"args.{name}: the arguments are frozen; derived values are set during "
                             "validation and initialisation only")
    setattr(args, name, value)
