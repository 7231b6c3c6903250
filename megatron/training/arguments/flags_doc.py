"""docs/flags.md, rendered from the declarations (tools/gen_flags_doc.py writes it)."""

from . import foreign, groups
from .option import DEPRECATED, IMPL_CHOICE, REMOVED, STORE_FALSE, STORE_TRUE, UNSUPPORTED

_STATE_NAMES = {IMPL_CHOICE: "implementation choice", UNSUPPORTED: "not supported yet",
                DEPRECATED: "deprecated", REMOVED: "removed"}

HEADER = """\
# Command-line flags

Generated from `megatron/training/arguments/` by `tools/gen_flags_doc.py`; do not edit by hand.
The flags are Megatron-LM's (core_v0.15.0 names, dests and defaults), grouped under Megatron's
group titles, plus this project's `config file` group.

States:
- **implemented**: does what Megatron-LM does.
- **implementation choice**: accepted because it only picks an implementation; the note says what
  runs instead, and a note is printed at start when you set it.
- **not supported yet**: rejected at start with `--flag is not supported yet` when set to anything
  other than its default (some implemented flags reject only some values; the row says which).
- **deprecated**: accepted, mapped onto its replacement, with a note at start.
- **removed**: removed from Megatron-LM itself; rejected with the replacement.

Spellings: `--flag value` and `--flag=value`; underscore twins (`--tensor_model_parallel_size`)
are accepted with a note naming the dashed flag. `--config FILE.yaml` takes a flat mapping of
option names (dest such as `tensor_model_parallel_size`, or the flag without its dashes) to
values; flags on the command line win. `--print-config` prints the resolved values in that form.
"""


def render_flags_markdown():
    """The whole of docs/flags.md as a string."""
    parts = [HEADER]
    for title in groups.group_titles():
        parts.append(f"\n## {title}\n\n| Flag | Default | State | Help |\n|---|---|---|---|")
        for option in groups.options_in_group(title):
            parts.append("| " + " | ".join(_cell(text) for text in (
                _flags_text(option), _default_text(option), _state_text(option),
                option.help)) + " |")
    parts.append("\n## Flags of other projects\n\nThese come from Megatron-DeepSpeed, the "
                 "epfLLM fork or old Megatron-LM releases; they are refused with what to use "
                 "instead.\n\n| Flag | Use instead |\n|---|---|")
    for flag, message in sorted(foreign.FOREIGN_FLAGS.items()):
        parts.append(f"| `{flag}` | {_cell(message)} |")
    return "\n".join(parts) + "\n"


def _flags_text(option):
    text = " / ".join(f"`{flag}`" for flag in option.flags)
    if option.dest != option.primary.lstrip("-").replace("-", "_"):
        text += f" (dest `{option.dest}`)"
    return text


def _default_text(option):
    if option.action == STORE_TRUE:
        return "off"
    if option.action == STORE_FALSE:
        return "on"
    if option.default is None:
        return "None"
    if option.default == "":
        return '""'
    if isinstance(option.default, list):
        return " ".join(str(item) for item in option.default) or "[]"
    return str(option.default)


def _state_text(option):
    if option.state == IMPL_CHOICE:
        text = f"implementation choice: {option.note}"
    elif option.state == DEPRECATED:
        text = f"deprecated: {option.note}"
    elif option.state in (UNSUPPORTED, REMOVED):
        text = _STATE_NAMES[option.state] + (f" ({option.note})" if option.note else "")
    else:
        text = "implemented"
    if option.unsupported_values is not None and option.supported_text:
        text += f"; {option.supported_text}"
    if option.old_flags:
        text += "; old spelling " + ", ".join(f"`{flag}`" for flag in option.old_flags)
    if option.choices is not None:
        text += "; choices: " + ", ".join(str(choice) for choice in option.choices)
    return text


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")
