"""`--config FILE.yaml` (read) and `--print-config` (write): flat YAML of option names to values.

A key is an option's dest (`tensor_model_parallel_size`) or its flag without the leading dashes
(`tensor-model-parallel-size`, `no-load-optim`). Values are checked like command-line values: the
option's type and choices apply, nargs options take lists. Command-line flags win over the file.
"""

import os

import yaml

from . import groups, spellings
from .errors import ConfigError
from .option import DEPRECATED, REMOVED, UNSUPPORTED

# Not written by --print-config: they drive this run only, or come from the launcher.
_NOT_PRINTED = frozenset({"config", "print_config", "local_rank"})
# Bookkeeping attributes of the namespace that are neither options nor derived values.
_BOOKKEEPING = frozenset({"startup_notes", "user_set_options"})


def read_config_file(path):
    """The mapping stored in `path`; ConfigError naming --config when it is missing or malformed."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: file not found; give the path of a YAML file that "
                          "maps option names to values")
    try:
        with open(path, encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path}: not valid YAML ({error})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values at the "
                          f"top level, found {type(content).__name__}")
    return content


def apply_config_file(args, path, parser, user_set, defaults):
    """Set from the file every option the command line did not set (`user_set` holds what it
    did; `defaults` maps dests to their real defaults); returns the dests the file set."""
    content = read_config_file(path)
    by_dest, by_flag = _actions(parser)
    from_file = set()
    for key, value in content.items():
        if not isinstance(key, str):
            raise ConfigError(f"--config {path}: key {key!r} is not an option name")
        name = key[2:] if key.startswith("--") else key
        action, as_flag = by_dest.get(name), False
        if action is None and f"--{name}" in by_flag:
            action, as_flag = by_flag[f"--{name}"], True
        if action is None:
            raise ConfigError(_unknown_key_message(path, key, by_dest, by_flag))
        if action.dest == "config":
            raise ConfigError(f"--config {path}: a config file cannot name another config file")
        converted = _convert(path, key, action, value, as_flag, defaults.get(action.dest))
        if converted is _SKIP:
            continue
        if action.dest in user_set:
            continue  # the command line wins
        setattr(args, action.dest, converted)
        from_file.add(action.dest)
    return from_file


_SKIP = object()


def _actions(parser):
    by_flag = {flag: action for flag, action in parser._option_string_actions.items()
               if action.dest != "help"}
    by_dest = {action.dest: action for action in by_flag.values()}
    return by_dest, by_flag


def _unknown_key_message(path, key, by_dest, by_flag):
    message = spellings.explain_foreign("--" + key.lstrip("-"))
    if message is not None:
        return f"--config {path}: key {key!r}: {message}"
    candidates = list(by_dest) + [flag[2:] for flag in by_flag if flag.startswith("--")]
    return f"--config {path}: unknown option {key!r}" + spellings.suggestion(key, candidates, "'")


def _convert(path, key, action, value, as_flag, default):
    where = f"--config {path}: {key}"
    if action.nargs == 0:  # store_true / store_false
        if value is None and not as_flag and default is None:
            return None  # Megatron declares a few switches with default None
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        if as_flag:
            # `no-load-optim: true` means the flag was given; false means it was not.
            return action.const if value else _SKIP
        return value
    if value is None:
        if default is not None:
            raise ConfigError(f"{where}: null is only allowed for options whose default is "
                              "null; give a value or leave the key out")
        return None
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if action.nargs == "+" and not items:
            raise ConfigError(f"{where}: expected at least one value")
        return [_convert_scalar(where, action, item) for item in items]
    if action.nargs is not None:
        raise ConfigError(f"{where}: options taking {action.nargs} values cannot be set from a "
                          "config file; give it on the command line")
    return _convert_scalar(where, action, value)


def _convert_scalar(where, action, value):
    if isinstance(value, (bool, list, dict)) or value is None:
        raise ConfigError(f"{where}: expected a single {_type_name(action)} value, got {value!r}")
    try:
        converted = action.type(str(value)) if action.type is not None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {_type_name(action)}, got {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(choice) for choice in action.choices)
        raise ConfigError(f"{where}: invalid choice {value!r} (choose from {choices})"
                          + spellings.suggestion(str(value), [str(c) for c in action.choices], "'"))
    return converted


def _type_name(action):
    return {int: "an integer", float: "a number", str: "a string"}.get(action.type, "a value")


def args_to_yaml(args):
    """The resolved options as YAML that --config reads back; derived values follow as comments.

    Deprecated, removed and unsupported options are left out: after validation they hold their
    defaults (their meaning, if any, was moved to the replacement option).
    """
    lines = ["# Resolved options; read back with --config FILE.yaml"]
    printed = set()
    for title in groups.group_titles():
        entries = []
        for option in groups.options_in_group(title):
            if option.state in (DEPRECATED, REMOVED, UNSUPPORTED) or option.dest in _NOT_PRINTED:
                continue
            if not hasattr(args, option.dest):
                continue
            entries.append(_yaml_entry(option.dest, getattr(args, option.dest)))
            printed.add(option.dest)
        if entries:
            lines.append(f"# {title}")
            lines.extend(entries)
    declared = {option.dest for option in groups.all_options()}
    derived = [name for name in vars(args) if name not in declared and name not in _BOOKKEEPING]
    derived += sorted(_NOT_PRINTED & set(vars(args)) - {"config", "print_config"})
    if derived:
        lines.append("# derived or from the environment (not read back):")
        for name in derived:
            lines.append("#   " + _yaml_entry(name, getattr(args, name)))
    return "\n".join(lines) + "\n"


def _yaml_entry(name, value):
    value = _plain(value)
    text = yaml.safe_dump({name: value}, default_flow_style=True, sort_keys=False, width=10**6)
    # safe_dump in flow style wraps the mapping in braces: {name: value}
    return text.strip()[1:-1].strip()


def _plain(value):
    """A value YAML can write: tuples become lists, other objects (torch dtypes) their str."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
