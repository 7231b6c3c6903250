"""Errors caused by what the user gave: flags, files, data, checkpoints, a run that must stop.

Raise one of these (never a bare ValueError or assert) when the cause is the input and the message
can say what was expected and what to do. Entry points and tools run under
``megatron.cli.main_guard``, which prints such an error as one line, without a traceback, and exits
with its ``exit_code`` (2 for bad input, argparse's convention). Any other exception is a bug and
keeps its traceback. ``MEGATRON_TRACEBACK=1`` shows the stack of these too.

Each class also derives from the built-in exception callers caught before it existed
(ValueError, FileNotFoundError, RuntimeError), so ``except ValueError`` keeps working.
"""


class UserError(Exception):
    """Base of the errors whose message is for the user; ``exit_code`` is the process's status."""

    exit_code = 2
    # True when every rank raises the same error for the same reason (flag validation before the
    # ranks diverge): then only rank 0 prints it.
    same_on_every_rank = False


class ConfigError(UserError, ValueError):
    """A bad command line, config file or combination of flags; the message names the flags."""

    same_on_every_rank = True


class DataError(UserError, ValueError):
    """A data file (.bin/.idx, jsonl, blend, split, tokenizer file) that cannot be used as given."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the flags name does not exist (the message names the flag and path)."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be saved or loaded as asked (missing, damaged, incompatible)."""


class TrainingStopped(UserError, RuntimeError):
    """The run stopped on purpose because going on would be wrong (a NaN loss, say): not bad input."""

    exit_code = 1


class NotSupportedError(UserError, NotImplementedError):
    """A Megatron Core argument or config field that megatron-lite accepts in its signature but does
    not implement, given a value other than its default. Raised only by
    ``megatron.core.utils.reject_unsupported``; the message names the argument and its owner."""
