"""The flags namespace the data code reads, complete.

Scripts (and tests) build datasets from a namespace of just the flags they care about, as
Megatron-LM's users do with `SimpleNamespace(data_path=..., split=..., ...)`. The missing flags
take their declared defaults (megatron/training/arguments), so the data code reads `args.name`
for every flag, like the rest of training, with no default of its own to drift.
"""
import functools
from types import SimpleNamespace


@functools.lru_cache(maxsize=1)
def _declared_defaults():
    from megatron.training.arguments import all_options
    return {option.dest: option.default for option in all_options()}


def with_declared_defaults(args) -> SimpleNamespace:
    """A namespace with every declared flag: `args`' values, the declared default for the rest
    (and for a None given where the declared default is not None)."""
    defaults = _declared_defaults()
    values = dict(defaults)
    values.update({name: value for name, value in vars(args).items()
                   if value is not None or defaults.get(name) is None})
    return SimpleNamespace(**values)
