"""Command-line spellings: underscore twins of our flags, and explaining flags we do not know."""

import difflib

from . import foreign
from .errors import ConfigError


def normalize(argv, known_flags, notes, old_spellings=None):
    """Rewrite `--tensor_model_parallel_size` style tokens to the dashed spelling.

    The epfLLM fork and some recipes write every flag with underscores. Such a token is accepted
    when its dashed twin is a known flag; one note per flag names the dashed spelling. Known
    spellings (including Megatron's own `--override-opt_param-scheduler`) are left alone.
    `old_spellings` maps still-accepted old spellings to the primary one, for a note.
    """
    old_spellings = old_spellings or {}
    rewritten, noted = [], set()
    for token in argv:
        if token == "--":
            rewritten.append(token)
            continue
        name, sep, value = token.partition("=")
        if name.startswith("--") and "_" in name and name not in known_flags:
            dashed = "--" + name[2:].replace("_", "-")
            if dashed in known_flags:
                if name not in noted:
                    noted.add(name)
                    notes.append(f"{name}: underscore spelling accepted; the flag is {dashed}")
                token = dashed + sep + value
                name = dashed
        if name in old_spellings and name not in noted:
            noted.add(name)
            notes.append(f"{name} is an old spelling; use {old_spellings[name]}")
        rewritten.append(token)
    return rewritten


def raise_for_unknown(unknown, known_flags, argv=()):
    """Raise one ConfigError explaining every token argparse could not place."""
    problems = []
    previous_was_flag = False
    for token in unknown:
        if token.startswith("-") and not _is_number(token):
            problems.append(explain_unknown_flag(token, known_flags))
            previous_was_flag = True
        elif not previous_was_flag:
            # A value after a switch that takes none, or a stray word.
            problems.append(f"unexpected argument {token!r}" + _after(token, argv))
        # Values right after an unknown flag belong to it and are covered by its message.
    raise ConfigError("\n".join(problems))


def explain_unknown_flag(token, known_flags):
    """'--x is a DeepSpeed flag: ...' or 'unrecognized flag --x; did you mean --y?'."""
    name = token.split("=", 1)[0]
    return explain_foreign(name) or f"unrecognized flag {name}" + suggestion(name, known_flags)


def explain_foreign(name):
    """Why `name` is refused when it is another project's flag (or a Megatron-LM feature we do
    not have), naming what to use instead; None for a flag nobody knows."""
    message = foreign.lookup(name)
    if message is None:
        return None
    if message.startswith("a Megatron-LM flag"):
        return f"{name} is {message}"
    return f"{name} is not a Megatron-LM flag: {message}"


def closest(name, candidates):
    """The candidate closest to `name` (difflib), or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def suggestion(name, candidates, quote=""):
    """'; did you mean X?' for the closest candidate, or '' when nothing is close."""
    best = closest(name, candidates)
    return f"; did you mean {quote}{best}{quote}?" if best else ""


def _after(token, argv):
    argv = list(argv)
    if token in argv and argv.index(token) > 0:
        previous = argv[argv.index(token) - 1]
        return f" after {previous} (does {previous} take a value?)"
    return " (a stray value, or a flag missing its '--'?)"


def _is_number(token):
    try:
        float(token)
    except ValueError:
        return False
    return True
