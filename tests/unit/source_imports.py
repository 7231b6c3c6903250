"""The repository's Python sources as data, for the code-rule tests (test_code_rules.py): each file's
syntax tree and every import it makes (statement, line, module-level or inside a function), read with
``ast`` and never executed, so the rules run in milliseconds and need no torch."""
import ast
import functools
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_files(*folders: str) -> List[str]:
    """The .py files under ``folders`` (relative to the repository root), as repository-relative paths."""
    found = []
    for folder in folders:
        for directory, subdirs, files in os.walk(os.path.join(ROOT, folder)):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__" and not d.startswith("."))
            found += [os.path.relpath(os.path.join(directory, f), ROOT) for f in sorted(files) if f.endswith(".py")]
    return found


def entry_scripts() -> List[str]:
    """The thin entry points at the repository root (pretrain_gpt.py, ...)."""
    return sorted(f for f in os.listdir(ROOT) if f.endswith(".py") and os.path.isfile(os.path.join(ROOT, f)))


@functools.lru_cache(maxsize=None)
def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def syntax_tree(path: str) -> ast.Module:
    return ast.parse(read(path), filename=path)


def module_name(path: str) -> str:
    """megatron/core/__init__.py -> megatron.core; megatron/core/utils.py -> megatron.core.utils."""
    parts = path[:-len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)
def package_modules(package: str = "megatron") -> Dict[str, str]:
    """Every module of ``package``: dotted name -> repository-relative path."""
    return {module_name(path): path for path in python_files(package)}


@dataclass(frozen=True)
class Import:
    source: str        # the importing module, dotted
    target: str        # the imported module (or, for a name imported from a package, the package)
    path: str          # the importing file
    line: int
    lazy: bool         # inside a function body: runs on call, not at import time
    type_only: bool    # under `if TYPE_CHECKING:`: never runs

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _literal_module_call(node: ast.Call) -> Optional[str]:
    """The module of importlib.import_module("x.y") / import_module("x.y") / __import__("x.y")."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, path: str, known_modules: Dict[str, str]):
        self.path, self.known = path, known_modules
        self.source = module_name(path)
        self.is_package = path.endswith("__init__.py")
        self.function_depth, self.type_only_depth = 0, 0
        self.found: List[Import] = []

    def _add(self, target: str, node: ast.AST) -> None:
        self.found.append(Import(self.source, target, self.path, node.lineno, self.function_depth > 0,
                                 self.type_only_depth > 0))

    def _resolve_relative(self, module: Optional[str], level: int) -> str:
        base = self.source.split(".") if self.is_package else self.source.split(".")[:-1]
        base = base[:len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def visit_FunctionDef(self, node) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_only_depth += 1
            for child in node.body:
                self.visit(child)
            self.type_only_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve_relative(node.module, node.level) if node.level else node.module
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name` runs pkg only.
            self._add(submodule if submodule in self.known else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        literal = _literal_module_call(node)
        if literal is not None and not literal.startswith("."):
            self._add(literal, node)
        self.generic_visit(node)


def imports_in(tree: ast.Module, path: str) -> Tuple[Import, ...]:
    """Every import in ``tree`` (the source of ``path``), in source order."""
    collector = _ImportCollector(path, package_modules())
    collector.visit(tree)
    return tuple(collector.found)


@functools.lru_cache(maxsize=None)
def imports_of(path: str) -> Tuple[Import, ...]:
    return imports_in(syntax_tree(path), path)


def calls_named(tree: ast.Module, name: str) -> List[int]:
    """Lines of calls of ``name(...)`` or ``anything.name(...)`` in ``tree``."""
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == name)
        or (isinstance(node.func, ast.Attribute) and node.func.attr == name)))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")
