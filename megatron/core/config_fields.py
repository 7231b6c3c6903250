"""Config dataclasses that never drop a field silently.

``@megatron_config(unsupported=..., no_effect=...)`` on a Megatron Core config dataclass
(TransformerConfig, ModelParallelConfig, OptimizerConfig, DistributedDataParallelConfig):

- a field listed in ``unsupported`` (name -> what is missing) raises NotSupportedError at
  construction when set to a value other than its default;
- a field listed in ``no_effect`` (name -> why) is accepted whatever its value: it cannot change
  the result here (kernel choices, communication tuning, knobs of features that are off);
- a keyword that is not a field raises: "megatron-core's field X is not supported here" when it is
  one of megatron-core 0.16.1's fields (unless given megatron-core's default, which changes nothing),
  otherwise a TypeError naming it and the closest field names.

Every other field is read by the library (tests/unit/test_no_silent_drops.py checks it).
"""
import dataclasses
import difflib
import functools
from typing import Dict, Optional

from megatron.core._mcore_fields import COMPLEX, MCORE_FIELDS
from megatron.core.errors import NotSupportedError


def _unset(value, default) -> bool:
    """Whether ``value`` asks for nothing beyond ``default`` (None and False both mean "off")."""
    if value is default:
        return True
    if (default is None or default is False) and (value is None or value is False):
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # noqa: BLE001 - incomparable values are not the default
        return False


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _tables(cls, attr: str) -> Dict[str, str]:
    merged: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get(attr, {}))
    return merged


def megatron_config(unsupported: Optional[Dict[str, str]] = None, no_effect: Optional[Dict[str, str]] = None,
                    mcore_name: Optional[str] = None):
    """Class decorator, applied above ``@dataclass``."""

    def wrap(cls):
        cls._unsupported_fields = dict(unsupported or {})
        cls._no_effect_fields = dict(no_effect or {})
        name = mcore_name or cls.__name__
        mcore_fields = MCORE_FIELDS.get(name, {})
        original_init = cls.__init__

        @functools.wraps(original_init)
        def __init__(self, *args, **kwargs):
            own = {f.name for f in dataclasses.fields(cls)}
            for key in [k for k in kwargs if k not in own]:
                value = kwargs.pop(key)
                if key in mcore_fields:
                    default = mcore_fields[key]
                    if default is not COMPLEX and _unset(value, default):
                        continue  # megatron-core's default: asks for nothing
                    raise NotSupportedError(f"{cls.__name__}: megatron-core's field {key} is not supported here "
                                            f"(given {value!r}); leave it unset")
                close = difflib.get_close_matches(key, sorted(own), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise TypeError(f"{cls.__name__} has no field {key!r} (nor does megatron-core's {name}){hint}")
            original_init(self, *args, **kwargs)
            check_unsupported_fields(self)

        cls.__init__ = __init__
        return cls

    return wrap


def check_unsupported_fields(config) -> None:
    """Raise NotSupportedError for the first unsupported field set away from its default."""
    table = _tables(type(config), "_unsupported_fields")
    for f in dataclasses.fields(config):
        if f.name in table:
            default = _field_default(f)
            value = getattr(config, f.name)
            if not _unset(value, default):
                raise NotSupportedError(f"{type(config).__name__}: field {f.name}={value!r} is not supported "
                                        f"({table[f.name]}); leave it at {default!r}")


def field_tables(cls):
    """(unsupported, no_effect) tables of a config class, merged over its bases."""
    return _tables(cls, "_unsupported_fields"), _tables(cls, "_no_effect_fields")
