"""parse_and_validate: the one call an entry script or initializer needs."""

import sys

from .config_file import args_to_yaml
from .parser import parse_args
from .validation import validate_args


def parse_and_validate(argv=None, extra_args_provider=None, args_defaults=None, world_size=None,
                       ignore_unknown_args=False):
    """parse_args + validate_args; with --print-config, print the resolved YAML and exit 0."""
    args = parse_args(extra_args_provider=extra_args_provider,
                      ignore_unknown_args=ignore_unknown_args, argv=argv)
    validate_args(args, defaults=args_defaults, world_size=world_size)
    print_config_and_exit_if_asked(args)
    return args


def print_config_and_exit_if_asked(args, stream=None):
    """For callers that run parse_args and validate_args themselves (as Megatron's
    initialize_megatron does): honour --print-config after validation."""
    if getattr(args, "print_config", False):
        (stream or sys.stdout).write(args_to_yaml(args))
        sys.exit(0)
