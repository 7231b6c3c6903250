"""Moving a deprecated option's value onto its replacement."""

from ..errors import ConfigError


def replace(args, dest, value, old_flag, new_flag):
    """Set `dest` from a deprecated flag, unless the replacement already holds another value.

    Both given with different values is a contradiction the user must resolve.
    """
    current = getattr(args, dest, None)
    user_set = dest in getattr(args, "user_set_options", ())
    if user_set and current is not None and current != value:
        raise ConfigError(f"{old_flag} (deprecated, means {new_flag} {value}) contradicts "
                          f"{new_flag} {current}; keep only {new_flag}")
    setattr(args, dest, value)
