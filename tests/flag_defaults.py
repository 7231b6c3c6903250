"""A namespace holding every declared flag at its default, for tests of functions that read args."""
from argparse import Namespace


def default_args(**overrides) -> Namespace:
    """Every flag's default (what parse_args gives for an empty command line), then ``overrides``."""
    from megatron.training.arguments import parse_args
    args = vars(parse_args(argv=[]))
    args.update(overrides)
    return Namespace(**args)
