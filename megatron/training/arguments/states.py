"""Apply each option's declared state to what the user set.

Runs before any derived value is computed, so it only ever sees the user's own values:
unsupported and removed flags (or unsupported values) are refused, all in one error; deprecated
flags are moved onto their replacement with a note; implementation-choice flags earn a note that
says what we do instead.
"""

from . import groups
from .errors import ConfigError
from .option import DEPRECATED, IMPL_CHOICE, REMOVED, STORE_FALSE, STORE_TRUE, UNSUPPORTED


def apply_option_states(args, notes):
    """Refuse unsupported settings (ConfigError listing all of them); migrate deprecated ones."""
    refused = []
    for option in groups.all_options():
        if not hasattr(args, option.dest):
            continue
        value = getattr(args, option.dest)
        if option.rejects(value):
            refused.append(refusal_message(option, value))
    if refused:
        raise ConfigError("\n".join(refused))

    for option in groups.all_options():
        value = getattr(args, option.dest, option.default)
        if not option.differs_from_default(value):
            continue
        if option.state == IMPL_CHOICE:
            notes.append(f"{option_text(option, value)}: accepted; {option.note}")
        elif option.state == DEPRECATED:
            if option.migrate is not None:
                option.migrate(args, value)
            notes.append(f"{option.primary} is deprecated: {option.note}")
            # The replacement now carries the meaning; the old flag returns to its default so
            # nothing downstream (or --print-config) acts on it twice.
            setattr(args, option.dest, option.default)


def refusal_message(option, value):
    if option.state == REMOVED:
        return f"{option.primary} was removed from Megatron-LM: {option.note}"
    if option.state == UNSUPPORTED:
        text = f"{option.primary} is not supported yet"
        return text + (f" ({option.note})" if option.note else "")
    text = f"{option_text(option, value)} is not supported yet"
    return text + (f" ({option.supported_text})" if option.supported_text else "")


def option_text(option, value):
    """How the user wrote it: '--flag' for switches, '--flag VALUE' otherwise."""
    if option.action in (STORE_TRUE, STORE_FALSE):
        return option.primary
    if isinstance(value, (list, tuple)):
        return f"{option.primary} {' '.join(str(item) for item in value)}"
    return f"{option.primary} {value}"
