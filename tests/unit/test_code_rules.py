"""The project's code rules (BRIEF.md, docs/architecture.md), checked on the sources with ``ast``:
megatron/core never reaches for the driver (no megatron.training import, no get_args()), files stay
small, and the package's import graph has no cycle and no edge out of core into the driver layers.
Nothing is imported or executed, so each test takes milliseconds."""
import ast
from collections import defaultdict
from typing import Dict, List, Set

from tests.unit.source_imports import (
    calls_named, entry_scripts, imports_in, imports_of, module_name, package_modules, python_files, read,
    syntax_tree, within)

MAX_LINES = 500
# Layers built on core: core must work (and import) without any of them.
ABOVE_CORE = ("megatron.training", "megatron.preprocess", "megatron.inference")


def _driver_reaches(tree: ast.Module, path: str) -> List[str]:
    """Where a core file imports megatron.training or calls get_args()."""
    found = [f"{imp.where()}: imports {imp.target}" for imp in imports_in(tree, path)
             if within(imp.target, "megatron.training")]
    return found + [f"{path}:{line}: calls get_args()" for line in calls_named(tree, "get_args")]


def test_core_never_imports_training_nor_calls_get_args():
    offences = [found for path in python_files("megatron/core") for found in _driver_reaches(syntax_tree(path), path)]
    assert not offences, ("megatron/core must take config objects or explicit arguments, never the driver's "
                          "global args:\n  " + "\n  ".join(offences))


def test_no_source_file_is_over_the_size_ceiling():
    paths = python_files("megatron", "tools", "examples") + entry_scripts()
    assert len(paths) > 50 and "pretrain_gpt.py" in paths  # the walk found the tree
    too_long = {path: len(read(path).splitlines()) for path in paths}
    too_long = {path: n for path, n in too_long.items() if n > MAX_LINES}
    assert not too_long, (f"files over {MAX_LINES} lines (split them by responsibility): "
                          + ", ".join(f"{path} ({n} lines)" for path, n in sorted(too_long.items())))


def _module_level_graph() -> Dict[str, Dict[str, List[str]]]:
    """source -> target -> [file:line, ...] for the imports that run when the source is imported."""
    known = package_modules()
    graph: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for path in known.values():
        for imp in imports_of(path):
            if not imp.lazy and not imp.type_only and imp.target in known and imp.target != imp.source:
                graph[imp.source][imp.target].append(imp.where())
    return graph


def _cycles(graph: Dict[str, Dict[str, List[str]]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_among_module_level_imports():
    graph = _module_level_graph()
    assert graph["megatron.training.training"], "the graph is empty: the import collector is broken"
    reports = []
    for component in _cycles(graph):
        members = set(component)
        edges = [f"{src} -> {dst} ({', '.join(graph[src][dst])})"
                 for src in component for dst in sorted(graph[src]) if dst in members]
        reports.append("cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(edges))
    assert not reports, ("module-level imports form a cycle (move the shared piece into a module both can "
                         "import; a function-level import is the last resort):\n  " + "\n  ".join(reports))


def _first_path(loads: Dict[str, Dict[str, str]], start: str, is_goal) -> List[str]:
    """The shortest chain of loads from ``start`` to a module where ``is_goal`` holds, as
    ["module (why)", ..., goal]; empty if none is reached."""
    came_from = {start: None}
    frontier = [start]
    while frontier:
        next_frontier = []
        for module in frontier:
            for nxt, why in sorted(loads[module].items()):
                if nxt in came_from:
                    continue
                came_from[nxt] = (module, why)
                if is_goal(nxt):
                    chain, node = [nxt], nxt
                    while came_from[node] is not None:
                        node, why = came_from[node]
                        chain.append(f"{node} ({why})")
                    return chain[::-1]
                next_frontier.append(nxt)
        frontier = next_frontier
    return []


def test_core_has_no_import_edge_into_the_layers_above_it():
    """Direct edges of any kind (module-level, in a function, under TYPE_CHECKING), and what importing a
    core module loads through module-level imports, parent packages included (importing megatron.core.x
    runs megatron/__init__.py and megatron/core/__init__.py first)."""
    known = package_modules()
    offences = [f"{imp.where()}: imports {imp.target}"
                for path in python_files("megatron/core") for imp in imports_of(path)
                if any(within(imp.target, layer) for layer in ABOVE_CORE)]

    loads: Dict[str, Dict[str, str]] = defaultdict(dict)  # module -> what it loads -> why
    for name, path in known.items():
        parts = name.split(".")
        for i in range(1, len(parts)):
            loads[name][".".join(parts[:i])] = "its parent package runs first"
        for imp in imports_of(path):
            if not imp.lazy and not imp.type_only and imp.target in known:
                loads[name].setdefault(imp.target, imp.where())
    for start in sorted(name for name in known if within(name, "megatron.core")):
        chain = _first_path(loads, start, lambda m: any(within(m, layer) for layer in ABOVE_CORE))
        if chain:
            offences.append(f"importing {start} loads {chain[-1]}: " + " -> ".join(chain))
    shown = sorted(set(offences))
    more = f"\n  ... and {len(shown) - 12} more" if len(shown) > 12 else ""
    assert not offences, ("megatron.core must not depend on " + ", ".join(ABOVE_CORE) + ":\n  "
                          + "\n  ".join(shown[:12]) + more)


# The rules above pass on a clean tree; these show that their collector sees every form they forbid.
BREAKING_SOURCE = """
import megatron.training.global_vars
from megatron.training import get_args as ga
from ...training.utils import print_rank_0
from ... import training
import importlib
if TYPE_CHECKING:
    from megatron.training.arguments import Option

def lazy():
    from megatron.training.training import reduce_losses
    return importlib.import_module("megatron.training.checkpointing"), ga(), megatron.training.get_args()
"""


def test_the_rule_collector_sees_every_form_of_import_and_call():
    path = "megatron/core/models/fake.py"  # relative imports resolve from megatron.core.models
    found = _driver_reaches(ast.parse(BREAKING_SOURCE), path)
    lines = sorted(int(entry.split(":")[1]) for entry in found)
    assert lines == [2, 3, 4, 5, 8, 11, 12, 12], found  # ga() is a renamed get_args: only the name counts
    imports = {imp.line: imp for imp in imports_in(ast.parse(BREAKING_SOURCE), path)}
    assert imports[4].target == "megatron.training.utils" and not imports[4].lazy
    assert imports[5].target == "megatron.training" and imports[8].type_only
    assert imports[11].lazy and imports[12].target == "megatron.training.checkpointing" and imports[12].lazy
    assert module_name("megatron/core/__init__.py") == "megatron.core"
    assert package_modules()["megatron.core.parallel_state"] == "megatron/core/parallel_state.py"


def test_cycle_finder_finds_a_cycle_and_only_the_cycle():
    graph = {"a": {"b": ["a.py:1"]}, "b": {"c": ["b.py:1"]}, "c": {"a": ["c.py:1"], "d": ["c.py:2"]}, "d": {}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": []}, "b": {}}) == []
