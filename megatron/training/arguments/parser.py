"""argparse generated from the declarations, and `parse_args` (Megatron's name; no validation).

Parsing order: spellings are normalized (underscore twins, `--local_rank`), argparse reads the
command line, unknown flags are explained (foreign projects' flags name our equivalent, typos get
the closest flag), then `--config FILE.yaml` fills whatever the command line did not set, and
finally the declared defaults fill the rest. `args.user_set_options` remembers what the user gave
(command line or file), so Megatron's `args_defaults` only fill options the user left alone.
"""

import argparse
import os
import re
import sys

from . import groups, spellings
from .config_file import apply_config_file
from .errors import ConfigError
from .option import IMPLEMENTED, VALUE


class _NotGiven:
    """Default placed in the argparse namespace so we can tell 'given' from 'left at default'."""

    def __repr__(self):
        return "<not given>"


NOT_GIVEN = _NotGiven()

_INVALID_CHOICE = re.compile(r"argument (?P<flag>[^:]+): invalid choice: '(?P<value>[^']*)'")


class RaisingArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises ConfigError instead of printing usage and exiting."""

    def error(self, message):
        match = _INVALID_CHOICE.search(message)
        if match:
            message += _choice_suggestion(self, match.group("flag"), match.group("value"))
        raise ConfigError(message)


def _choice_suggestion(parser, flag_text, value):
    import difflib

    for flag in flag_text.split("/"):
        action = parser._option_string_actions.get(flag.strip())
        if action is not None and action.choices:
            choices = [str(choice) for choice in action.choices]
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            if close:
                return f"; did you mean '{close[0]}'?"
    return ""


def help_text(option):
    """Help line with the option's state, as --help shows it ('%' escaped for argparse)."""
    text = option.help
    if option.state != IMPLEMENTED or option.supported_text:
        text += f" [{option.state_text()}]"
    if option.action == VALUE and option.default not in (None, "", [], ()):
        text += f" (default: {option.default})"
    return text.replace("%", "%%")


def add_option_arguments(container, options):
    """Add the declared `options` to an argparse parser or argument group."""
    for option in options:
        kwargs = {"dest": option.dest, "help": help_text(option), "default": option.default}
        if option.action == VALUE:
            kwargs.update(type=option.type, nargs=option.nargs, metavar=option.metavar)
            if option.choices is not None:
                kwargs["choices"] = option.choices
        else:
            kwargs["action"] = option.action
        container.add_argument(*option.flags, **kwargs)


def add_option_group(parser, group_title):
    """Add the options of Megatron's group `group_title` to any argparse parser; returns it."""
    group = parser.add_argument_group(title=group_title)
    add_option_arguments(group, groups.options_in_group(group_title))
    return parser


def add_tokenizer_args(parser):
    """Add exactly the tokenizer group's options (tools/preprocess_data.py uses it)."""
    return add_option_group(parser, "tokenizer")


def build_parser(extra_args_provider=None, description="Megatron-LM Arguments"):
    """The full parser: every declared group, then the caller's extra arguments."""
    parser = RaisingArgumentParser(description=description, allow_abbrev=False,
                                   usage="%(prog)s [options]  (--help lists them by group)")
    for title in groups.group_titles():
        group = parser.add_argument_group(title=title)
        add_option_arguments(group, groups.options_in_group(title))
    if extra_args_provider is not None:
        parser = extra_args_provider(parser)
        if parser is None:
            raise ConfigError("extra_args_provider must return the parser it was given")
    return parser


def parse_args(extra_args_provider=None, ignore_unknown_args=False, argv=None):
    """Parse the command line (sys.argv[1:] unless `argv` is given) and `--config` into a Namespace.

    No validation and no derived values: see validate_args. Raises ConfigError on bad input.
    """
    parser = build_parser(extra_args_provider)
    argv = list(sys.argv[1:] if argv is None else argv)
    notes = []
    known = frozenset(parser._option_string_actions)
    old_spellings = {flag: option.primary for option in groups.all_options()
                     for flag in option.old_flags}
    argv = spellings.normalize(argv, known, notes, old_spellings)
    defaults = _defaults_to_not_given(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not ignore_unknown_args:
        spellings.raise_for_unknown(unknown, known, argv)

    user_set = {dest for dest, value in vars(args).items() if value is not NOT_GIVEN}
    if getattr(args, "config", NOT_GIVEN) not in (None, NOT_GIVEN):
        user_set |= apply_config_file(args, args.config, parser, user_set, defaults)
    for dest, value in vars(args).items():
        if value is NOT_GIVEN:
            setattr(args, dest, _fresh(defaults[dest]))

    args.user_set_options = sorted(user_set)
    args.startup_notes = notes
    # Megatron reads these from the launcher's environment at parse time; validate_args may
    # override world_size when the caller knows better.
    args.rank = int(os.getenv("RANK", "0"))
    args.world_size = int(os.getenv("WORLD_SIZE", "1"))
    args.padded_vocab_size = None  # derived: build_tokenizer (or a checkpoint's arguments) sets it
    return args


def _defaults_to_not_given(parser):
    """Swap every argument's default (ours and the extra_args_provider's) for NOT_GIVEN, so
    the parsed namespace tells what the user gave; returns the real defaults by dest."""
    defaults = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        defaults.setdefault(action.dest, action.default)
        action.default = NOT_GIVEN
    return defaults


def _fresh(default):
    # A list default must not be shared between namespaces (callers append to them).
    return list(default) if isinstance(default, list) else default

