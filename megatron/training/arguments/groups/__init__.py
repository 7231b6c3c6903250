"""All option declarations, one module per Megatron argument group (the small groups share
small_groups.py), in Megatron's order."""

import functools

from . import (checkpointing, data, distributed, evaluation, initialization, learning_rate,
               logging_flags, mixed_precision, moe, network_size, regularization, small_groups,
               this_project, tokenizer, training, transformer_engine)

_small = small_groups
# Order of the groups in --help and docs/flags.md: Megatron's order of its _add_*_args calls,
# then this project's own options.
OPTION_GROUPS = (
    network_size.group, regularization.group, training.group, initialization.group,
    learning_rate.group, checkpointing.group, mixed_precision.group, distributed.group,
    evaluation.group, data.group, tokenizer.group, _small.autoresume, _small.vision, moe.group,
    _small.mla, logging_flags.group, _small.straggler, transformer_engine.group,
    _small.experimental, _small.one_logger, _small.fault_tolerance, _small.config_logger,
    _small.rerun, _small.msc, this_project.group,
)


@functools.lru_cache(maxsize=None)
def all_options():
    """Every declared option, in group order then declaration order (a tuple, never mutated)."""
    options = tuple(option for group in OPTION_GROUPS for option in group.options)
    _check_unique(options)
    return options


def group_titles():
    return tuple(group.title for group in OPTION_GROUPS)


def options_in_group(title):
    """The options of the group with Megatron's title `title` (ValueError if there is none)."""
    for group in OPTION_GROUPS:
        if group.title == title:
            return tuple(group.options)
    raise ValueError(f"no option group titled {title!r}; known groups: {', '.join(group_titles())}")


@functools.lru_cache(maxsize=None)
def options_by_dest():
    return {option.dest: option for option in all_options()}


@functools.lru_cache(maxsize=None)
def options_by_flag():
    return {flag: option for option in all_options() for flag in option.flags}


def _check_unique(options):
    # Two declarations sharing a spelling or a dest would make argparse, the YAML reader and the
    # docs disagree; fail at import instead.
    seen_flags, seen_dests = {}, {}
    for option in options:
        if option.dest in seen_dests:
            raise ValueError(f"dest {option.dest!r} declared twice: {option.primary} and "
                             f"{seen_dests[option.dest].primary}")
        seen_dests[option.dest] = option
        for flag in option.flags:
            if flag in seen_flags:
                raise ValueError(f"flag {flag} declared twice")
            seen_flags[flag] = option
