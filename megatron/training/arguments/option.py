"""The declaration of one command-line option, and a small builder to declare a group of them.

Every flag is declared once here-style (spelling, dest, type, default, help, group, state);
argparse, the `--config` YAML reader, validation and docs/flags.md are all generated from these
records, so they can never disagree about a flag.
"""

from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, Optional, Tuple, Union

# What we do with a flag.
IMPLEMENTED = "implemented"
IMPL_CHOICE = "impl_choice"  # accepted: it only picks an implementation; `note` says ours
UNSUPPORTED = "unsupported"  # rejected at start when set to anything but its default
DEPRECATED = "deprecated"  # accepted with a note, mapped onto its replacement by `migrate`
REMOVED = "removed"  # removed from Megatron-LM itself: rejected, `note` says what replaced it
STATES = (IMPLEMENTED, IMPL_CHOICE, UNSUPPORTED, DEPRECATED, REMOVED)

# How argparse consumes it.
VALUE = "value"
STORE_TRUE = "store_true"
STORE_FALSE = "store_false"

ValuePredicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Option:
    """One command-line option, with Megatron-LM's spelling, dest and default."""

    flags: Tuple[str, ...]  # primary spelling first (Megatron's), then accepted aliases
    dest: str  # attribute on the parsed namespace (Megatron's dest name)
    group: str  # Megatron's argument-group title
    help: str
    action: str = VALUE
    type: Optional[Callable[[str], Any]] = None
    default: Any = None
    choices: Optional[Tuple[Any, ...]] = None
    nargs: Optional[str] = None  # None, '+' or '*'
    metavar: Optional[str] = None
    state: str = IMPLEMENTED
    # impl_choice: what we do instead; deprecated: the replacement; unsupported/removed: what to
    # use now.
    note: str = ""
    # Values rejected even though the flag itself is accepted (e.g. pipeline size other than 1):
    # a set of values (for nargs options: any element in the set), or a predicate.
    unsupported_values: Union[FrozenSet[Any], ValuePredicate, None] = None
    supported_text: str = ""  # e.g. "only 1 for now", shown in errors and docs
    # deprecated: (args, value) -> None, applies the old flag's meaning to its replacement.
    migrate: Optional[Callable[[Any, Any], None]] = None
    # Spellings among `flags` that still work but earn a note naming the primary spelling.
    old_flags: Tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        return self.flags[0]

    def differs_from_default(self, value) -> bool:
        """True when `value` is not what the option holds by default (the user set it)."""
        if value is None:
            return self.default is not None
        if isinstance(value, (list, tuple)) and not isinstance(self.default, (list, tuple)):
            # nargs options with a scalar default (Megatron's moe-aux-loss-coeff 0.0).
            return list(value) != [self.default]
        return value != self.default

    def rejects(self, value) -> bool:
        """True when this value of the option must be refused at start."""
        if self.state in (UNSUPPORTED, REMOVED):
            return self.differs_from_default(value)
        if self.unsupported_values is None or value is None:
            return False
        if callable(self.unsupported_values):
            return bool(self.unsupported_values(value))
        values = value if isinstance(value, (list, tuple)) else [value]
        return any(item in self.unsupported_values for item in values)

    def state_text(self) -> str:
        """One line for --help and docs/flags.md."""
        if self.state == IMPLEMENTED:
            text = "implemented"
        elif self.state == IMPL_CHOICE:
            text = f"implementation choice: {self.note}" if self.note else "implementation choice"
        elif self.state == UNSUPPORTED:
            text = "not supported yet" + (f" ({self.note})" if self.note else "")
        elif self.state == REMOVED:
            text = "removed from Megatron-LM" + (f" ({self.note})" if self.note else "")
        else:
            text = f"deprecated: {self.note}" if self.note else "deprecated"
        if self.unsupported_values is not None and self.supported_text:
            text += f"; {self.supported_text}"
        return text


def dest_of(flag: str) -> str:
    """Megatron's default dest: the spelling without dashes, '-' turned into '_'."""
    return flag.lstrip("-").replace("-", "_")


class OptionGroup:
    """Collects the declarations of one argument group in declaration (and --help) order."""

    def __init__(self, title: str):
        self.title = title
        self.options = []

    def _add(self, flags, dest, **fields) -> Option:
        if fields.get("state", IMPLEMENTED) not in STATES:
            raise ValueError(f"{flags[0]}: unknown state {fields['state']!r}; use one of {STATES}")
        option = Option(flags=tuple(flags), dest=dest or dest_of(flags[0]), group=self.title,
                        **fields)
        self.options.append(option)
        return option

    def value(self, *flags, type=str, default=None, dest=None, help="", **fields) -> Option:
        """An option that takes a value (or a list of values with nargs='+' / '*')."""
        if "choices" in fields and fields["choices"] is not None:
            fields["choices"] = tuple(fields["choices"])
        return self._add(flags, dest, action=VALUE, type=type, default=default, help=help,
                         **fields)

    def switch(self, *flags, dest=None, default=False, help="", **fields) -> Option:
        """A store_true flag (off unless given)."""
        return self._add(flags, dest, action=STORE_TRUE, default=default, help=help, **fields)

    def negation(self, *flags, dest, help="", **fields) -> Option:
        """A store_false flag such as --no-x: dest holds True unless the flag is given."""
        return self._add(flags, dest, action=STORE_FALSE, default=True, help=help, **fields)
