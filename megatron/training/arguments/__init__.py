"""Megatron's command-line options: one declaration per flag, and everything generated from it.

Public API (Megatron's names where Megatron has one):
    parse_args(extra_args_provider=None, ignore_unknown_args=False, argv=None) -> Namespace
    validate_args(args, defaults=None, world_size=None) -> Namespace
    parse_and_validate(argv=None, extra_args_provider=None, args_defaults=None,
                       world_size=None) -> Namespace
    add_tokenizer_args(parser), add_option_group(parser, group_title) -> parser
    args_to_yaml(args) -> str
    all_options() -> tuple of Option
    ConfigError, exit_on_config_error()
"""

from .config_file import args_to_yaml
from .entry import parse_and_validate, print_config_and_exit_if_asked
from .errors import ConfigError, exit_on_config_error
from .groups import all_options, group_titles, options_in_group
from .option import Option
from .parser import add_option_group, add_tokenizer_args, build_parser, parse_args
from .validation import validate_args

__all__ = [
    "ConfigError", "Option", "add_option_group", "add_tokenizer_args", "all_options",
    "args_to_yaml", "build_parser", "exit_on_config_error", "group_titles", "options_in_group",
    "parse_and_validate", "parse_args", "print_config_and_exit_if_asked", "validate_args",
]
