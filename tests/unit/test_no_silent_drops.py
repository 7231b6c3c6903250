"""Nothing a caller gives megatron/core (or the Megatron-compatible driver, megatron/training) is
silently dropped.

1. Every parameter of a public function or method in megatron/core and megatron/training is read in its body (passing it
   to ``reject_unsupported`` or ``no_effect`` counts: those say why). The allow-list below names the
   few where reading is impossible or meaningless, each with its reason.
2. Every field of the Megatron Core config dataclasses is read somewhere in megatron/core, or is
   declared unsupported (raises when set) or without effect (with a reason).
3. Unsupported fields and unknown fields fail at construction with a message naming the field.
"""
import ast
import dataclasses
import functools
import pathlib

import pytest
import torch

from megatron.core.config_fields import field_tables
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.errors import NotSupportedError
from megatron.core.model_parallel_config import ModelParallelConfig
from megatron.core.optimizer import OptimizerConfig
from megatron.core.transformer.transformer_config import TransformerConfig

CORE = pathlib.Path(__file__).resolve().parents[2] / "megatron" / "core"
TRAINING = CORE.parent / "training"
# (root, prefix of its entries below, folders not walked): the flag system's parsers are not an API.
ROOTS = ((CORE, "", ()), (TRAINING, "training/", ("arguments",)))
ALLOWED = {
    "datasets/gpt_mock.py::MockGPTDataset.build_low_level_dataset(dataset_path)":
        "mock documents are made, not read: Megatron's signature of the low-level builder",
    "datasets/progress.py::PhaseProgress.__exit__(value)": "the context-manager protocol",
    "datasets/progress.py::PhaseProgress.__exit__(traceback)": "the context-manager protocol",
    "tokenizers/null.py::NullTokenizer.offsets(text)":
        "a null tokenizer's text is its ids written out: the offsets follow from the ids alone",
    "training/signal_handler.py::DistributedSignalHandler.__exit__(exc)":
        "the context-manager protocol: the handler is restored whatever the exception",
    "num_microbatches_calculator.py::ConstantNumMicroBatchesCalculator.update(consumed_samples)":
        "a constant calculator: the number of micro-batches does not depend on the samples consumed",
    "num_microbatches_calculator.py::ConstantNumMicroBatchesCalculator.update(consistency_check)":
        "a constant calculator: nothing to check",
    "num_microbatches_calculator.py::ConstantNumMicroBatchesCalculator.update(verbose)":
        "a constant calculator: nothing to report",
    "optimizer/grad_scaler.py::ConstantGradScaler.update(found_inf)": "--loss-scale is constant by definition",
    "optimizer/grad_scaler.py::ConstantGradScaler.load_state_dict(state_dict)": "a constant scale has no state",
    "timers.py::DummyTimer.start(barrier)": "the null timer of an unlogged level does nothing by design",
    "timers.py::DummyTimer.stop(barrier)": "the null timer of an unlogged level does nothing by design",
    "timers.py::DummyTimer.elapsed(reset)": "the null timer of an unlogged level does nothing by design",
    "timers.py::DummyTimer.elapsed(barrier)": "the null timer of an unlogged level does nothing by design",
    "transformer/identity_op.py::IdentityOp.__init__(args)": "an empty spec slot takes any arguments by design",
    "transformer/identity_op.py::IdentityOp.__init__(kwargs)": "an empty spec slot takes any arguments by design",
    "transformer/identity_op.py::IdentityOp.forward(args)": "an empty slot passes its input through",
    "transformer/identity_op.py::IdentityOp.forward(kwargs)": "an empty slot passes its input through",
    "transformer/identity_op.py::IdentityFuncOp.forward(args)": "an empty slot passes its input through",
    "transformer/identity_op.py::IdentityFuncOp.forward(kwargs)": "an empty slot passes its input through",
    "utils.py::no_effect(why)": "the marker itself: its arguments are documentation",
    "utils.py::no_effect(values)": "the marker itself: its arguments are documentation",
}


def _is_abstract(fn: ast.FunctionDef) -> bool:
    """An @abstractmethod, or a base-class stub whose body only raises NotImplementedError."""
    if any(isinstance(d, ast.Name) and d.id == "abstractmethod"
           or isinstance(d, ast.Attribute) and d.attr == "abstractmethod" for d in fn.decorator_list):
        return True
    body = [stmt for stmt in fn.body
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]  # docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


@functools.lru_cache(maxsize=None)
def _unread_parameters():
    found = []
    for root, prefix, skipped in ROOTS:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.split("/")[0] not in skipped:
                _collect_unread(path, prefix + rel, found)
    return tuple(found)


def _collect_unread(path, rel, found):
    """Append ``rel::Owner.function(param)`` for each public parameter never read in its body."""
    def visit(node, owner):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and _public(child.name):
                visit(child, f"{owner}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(child.name):
                if _is_abstract(child):
                    continue
                args = child.args
                params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
                read = {n.id for stmt in child.body for n in ast.walk(stmt) if isinstance(n, ast.Name)}
                for p in params:
                    if p not in ("self", "cls") and p not in read:
                        found.append(f"{rel}::{owner}{child.name}({p})")

    visit(ast.parse(path.read_text()), "")


def test_every_public_parameter_is_read_or_rejected():
    unread = [p for p in _unread_parameters() if p not in ALLOWED]
    assert not unread, ("parameters accepted but never read (implement them, or pass them to "
                        "megatron.core.utils.reject_unsupported / no_effect):\n  " + "\n  ".join(unread))
    stale = set(ALLOWED) - set(_unread_parameters())
    assert not stale, f"allow-list entries that are read now (remove them): {sorted(stale)}"


@functools.lru_cache(maxsize=None)
def _names_read_in_core():
    names = set()
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
                names.add(node.args[1].value)  # getattr(config, "name")
    return frozenset(names)


CONFIGS = [ModelParallelConfig, TransformerConfig, OptimizerConfig, DistributedDataParallelConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_is_read_or_declared(cls):
    unsupported, no_effect = field_tables(cls)
    read = _names_read_in_core()
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in unsupported and f.name not in no_effect and f.name not in read]
    assert not missing, f"{cls.__name__} fields nothing reads: {missing}"
    assert not set(unsupported) & set(no_effect)


def _minimal(cls, **kw):
    if cls is TransformerConfig:
        kw = {"num_layers": 1, "hidden_size": 8, "num_attention_heads": 2, **kw}
    return cls(**kw)


def test_unsupported_and_unknown_fields_fail_naming_the_field():
    with pytest.raises(NotSupportedError, match="num_moe_experts"):
        _minimal(TransformerConfig, num_moe_experts=8)
    with pytest.raises(NotSupportedError, match="num_distributed_optimizer_instances"):
        DistributedDataParallelConfig(num_distributed_optimizer_instances=2)
    with pytest.raises(NotSupportedError, match="exp_avg_dtype"):
        OptimizerConfig(exp_avg_dtype=torch.bfloat16)
    # A field of megatron-core 0.16.1 that we lack: named as such; its own default is harmless.
    with pytest.raises(NotSupportedError, match="megatron-core's field moe_router_topk is not supported here"):
        _minimal(TransformerConfig, moe_router_topk=4)
    _minimal(TransformerConfig, moe_router_topk=2)
    with pytest.raises(TypeError, match="'hiden_size'.*did you mean hidden_size"):
        _minimal(TransformerConfig, hiden_size=8)
    # A no-effect field takes any value; an unsupported one at its default is fine.
    assert _minimal(TransformerConfig, attention_softmax_in_fp32=False, window_size=None).window_size is None
