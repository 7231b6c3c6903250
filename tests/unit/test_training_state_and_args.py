"""Where a run is lives in TrainState; the arguments are read-only once initialised, and the code
reads only declared flags and declared derived values from them (checked on the source)."""
import ast
import os

import pytest

from megatron.training.arguments import all_options, build_parser, parse_and_validate
from megatron.training.arguments.derived import DERIVED, freeze, set_derived
from megatron.training.train_state import TrainState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4", "--seq-length", "32",
        "--max-position-embeddings", "32", "--micro-batch-size", "2", "--train-iters", "3", "--lr", "1e-3",
        "--mock-data"]


def test_train_state_round_trip_and_refuses_unknown_fields():
    state = TrainState(iteration=7, consumed_train_samples=56, consumed_valid_samples=16,
                       floating_point_operations_so_far=1.5e12, skipped_iterations=1, nan_iterations=2)
    copy = TrainState()
    copy.load_state_dict(state.state_dict())
    assert copy == state
    with pytest.raises(ValueError, match="unknown fields"):
        copy.load_state_dict({**state.state_dict(), "epoch": 3})
    legacy = TrainState.from_legacy_args({"consumed_train_samples": 80, "consumed_valid_samples": 8}, 10, 2.0)
    assert (legacy.iteration, legacy.consumed_train_samples, legacy.consumed_valid_samples) == (10, 80, 8)


def test_arguments_are_read_only_once_frozen():
    args = parse_and_validate(argv=TINY, world_size=1)
    set_derived(args, "padded_vocab_size", 128)  # initialisation may set a declared derived value
    with pytest.raises(KeyError, match="not a declared derived value"):
        set_derived(args, "iteration", 3)
    freeze(args)
    with pytest.raises(AttributeError, match="read-only"):
        args.lr = 0.1
    with pytest.raises(AttributeError, match="frozen"):
        set_derived(args, "padded_vocab_size", 256)
    assert args.lr == 1e-3 and args.padded_vocab_size == 128  # reading is unchanged


# ---- the source: what reads Megatron's args ----------------------------------------------------------

def _python_files(*roots):
    for root in roots:
        path = os.path.join(ROOT, root)
        if path.endswith(".py"):
            yield path
            continue
        for folder, _, names in os.walk(path):
            yield from (os.path.join(folder, n) for n in sorted(names) if n.endswith(".py"))


# Modules that read the training namespace (the flag system itself writes it, by design).
_READERS = [f for f in _python_files("megatron/training", "megatron/cli/generate.py", "megatron/cli/benchmark.py",
                                     "megatron/inference", "pretrain_gpt.py")
            if os.sep + "arguments" + os.sep not in f]


def _args_nodes(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        yield node


def _rel(path):
    return os.path.relpath(path, ROOT)


def test_nothing_assigns_to_args_outside_the_flag_system():
    offenders = []
    for path in _python_files("megatron", "tools", "examples", "pretrain_gpt.py"):
        if os.sep + "arguments" + os.sep in path or os.sep + "preprocess" + os.sep in path:
            continue  # preprocess_data.py has a namespace of its own
        for node in _args_nodes(path):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "args":
                        offenders.append(f"{_rel(path)}:{node.lineno} args.{sub.attr} = ...")
    assert not offenders, "assignments to args (use TrainState or a declared derived value):\n" + "\n".join(offenders)


def test_code_reads_only_declared_flags_and_derived_values():
    from megatron.cli.generate import add_generation_args
    declared = {o.dest for o in all_options()} | set(DERIVED)
    declared |= {a.dest for a in build_parser(add_generation_args)._actions}
    unknown, defaulted = [], []
    for path in _READERS:
        for node in _args_nodes(path):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args":
                if node.attr not in declared:
                    unknown.append(f"{_rel(path)}:{node.lineno} args.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "args" \
                    and len(node.args) == 3:
                defaulted.append(f"{_rel(path)}:{node.lineno}")
    assert not unknown, "reads of args that no flag or derived value declares:\n" + "\n".join(unknown)
    assert not defaulted, "getattr(args, name, default) hides a missing declaration:\n" + "\n".join(defaulted)
