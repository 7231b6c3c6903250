"""Gather the Python standard library's own text into a jsonl corpus, offline.

Every machine that runs Python has this text, so examples and benchmarks can train on real
language (code and English documentation) with no download. Kinds of document:

* ``source``: each ``.py`` module of the standard library, whole;
* ``docs``:   each module's documentation: the docstrings of the module, its classes and its
              functions (with their signatures), extracted with ``ast`` -- nothing is imported;
* ``text``:   the other UTF-8 text files in the library tree (``.txt``, ``.rst``, test data).

One JSON object a line: ``{"text": ..., "source": "python3.11/json/decoder.py", "kind": ...}``.
Files are visited in sorted path order, so the output is the same on every run with the same
Python. ``site-packages`` is never read (it is not the standard library).

How much there is depends on the Python build: CPython 3.11 gives about 31 MB of sources (19 MB
of them tests) and a few MB of docs and text; distribution packages often leave the tests out.
``--repeat N`` makes up to N passes over the same files when ``--max-mb`` asks for more: the
extra documents are exact repeats, tagged ``#repeat=K`` in ``source`` (good for throughput
benchmarks, not for measuring what a model learns).

    megatron-corpus --output stdlib.jsonl --max-mb 20        (or: python tools/corpus.py ...)
    megatron-corpus --output bench.jsonl --max-mb 100 --repeat 4
"""
import argparse
import ast
import io
import json
import os
import sys
import sysconfig
import tokenize
from typing import Dict, Iterator, List, Optional, Sequence

from megatron.core.errors import ConfigError

KINDS = ("source", "docs", "text")
DEFAULT_KINDS = ("source", "docs")
TEST_DIRS = {"test", "tests", "idle_test"}
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
TEXT_SUFFIXES = {".txt", ".rst", ".decTest", ".html", ".xml", ".json", ".cfg", ".ini", ".csv"}
BYTES_PER_MB = 1_000_000


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def _walk_files(root: str, exclude_tests: bool) -> Iterator[str]:
    """Relative POSIX paths of the files under `root`, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIP_DIRS and not d.startswith("config-")
            and not (exclude_tests and d in TEST_DIRS)
        )
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            yield rel.replace(os.sep, "/")


def _read_python(path: str) -> Optional[str]:
    """Source text decoded as Python would (coding cookie, else UTF-8); None if it cannot be."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return None  # the library's tests keep some deliberately broken files
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def _read_text(path: str) -> Optional[str]:
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        return None


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def _describe(node: ast.AST, prefix: str, out: List[str]) -> None:
    """Append the documentation of the classes and functions directly inside `node`."""
    for child in getattr(node, "body", []):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(child)
            if doc:
                keyword = "async def" if isinstance(child, ast.AsyncFunctionDef) else "def"
                out.append(f"{prefix}{keyword} {child.name}({ast.unparse(child.args)})")
                out.append(_indent(doc, prefix + "    ") + "\n")
        elif isinstance(child, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in child.bases)
            header = f"{prefix}class {child.name}" + (f"({bases})" if bases else "")
            inner: List[str] = []
            _describe(child, prefix + "    ", inner)
            doc = ast.get_docstring(child)
            if doc or inner:
                out.append(header)
                if doc:
                    out.append(_indent(doc, prefix + "    ") + "\n")
                out.extend(inner)


def module_docs(source: str, module: str) -> Optional[str]:
    """A module's docstrings as one readable document, or None when it has none."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    parts: List[str] = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(doc + "\n")
    _describe(tree, "", parts)
    if not parts:
        return None
    return f"Help on module {module}:\n\n" + "\n".join(parts).rstrip() + "\n"


def _module_name(rel: str) -> str:
    name = rel[:-3]
    if name.endswith("/__init__"):
        name = name[: -len("/__init__")]
    return name.replace("/", ".")


def iter_documents(
    kinds: Sequence[str] = DEFAULT_KINDS, exclude_tests: bool = False, root: Optional[str] = None
) -> Iterator[Dict[str, str]]:
    """The corpus documents, one pass over the library, in a fixed order."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--kinds: expected a comma-separated subset of {','.join(KINDS)}, "
                         f"got {','.join(kinds) or 'nothing'}")
    root = root or stdlib_dir()
    tag = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for rel in _walk_files(root, exclude_tests):
        path = os.path.join(root, rel)
        if exclude_tests and os.path.basename(rel).startswith("test_"):
            continue
        if rel.endswith(".py"):
            if "source" not in kinds and "docs" not in kinds:
                continue
            text = _read_python(path)
            if text is None:
                continue
            if "source" in kinds and text.strip():
                yield {"text": text, "source": f"{tag}/{rel}", "kind": "source"}
            if "docs" in kinds:
                docs = module_docs(text, _module_name(rel))
                if docs:
                    yield {"text": docs, "source": f"{tag}/{rel}", "kind": "docs"}
        elif "text" in kinds and os.path.splitext(rel)[1] in TEXT_SUFFIXES:
            text = _read_text(path)
            if text and text.strip():
                yield {"text": text, "source": f"{tag}/{rel}", "kind": "text"}


def build_corpus(
    output_path: str,
    max_mb: Optional[float] = None,
    kinds: Sequence[str] = DEFAULT_KINDS,
    exclude_tests: bool = False,
    repeat: int = 1,
    root: Optional[str] = None,
) -> Dict[str, float]:
    """Write the corpus to `output_path` (jsonl); returns documents, MB and passes written.

    Stops before the document that would take the file past `max_mb` (1 MB = 10^6 bytes).
    The file appears only when complete: it is written under a temporary name first.
    """
    if repeat < 1:
        raise ConfigError(f"--repeat: expected at least 1 pass, got {repeat}")
    limit = None if max_mb is None else int(max_mb * BYTES_PER_MB)
    if limit is not None and limit <= 0:
        raise ConfigError(f"--max-mb: expected a positive size, got {max_mb}")
    folder = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(folder, exist_ok=True)
    tmp_path = f"{output_path}.tmp.{os.getpid()}"
    written, documents, passes, full = 0, 0, 0, False
    try:
        with open(tmp_path, "wb") as out:
            for pass_index in range(1, repeat + 1):
                passes = pass_index
                for doc in iter_documents(kinds, exclude_tests, root):
                    if pass_index > 1:
                        doc["source"] += f"#repeat={pass_index}"
                    line = (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8")
                    if limit is not None and written + len(line) > limit:
                        full = True
                        break
                    out.write(line)
                    written += len(line)
                    documents += 1
                if full or limit is None:
                    break
        os.replace(tmp_path, output_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return {"documents": documents, "mb": written / BYTES_PER_MB, "passes": passes, "full": full}


def _main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    parser.add_argument("--output", required=True, help="jsonl file to write")
    parser.add_argument("--max-mb", type=float, default=None,
                        help="stop before the file exceeds this many MB (10^6 bytes)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)} (default: %(default)s)")
    parser.add_argument("--exclude-tests", action="store_true",
                        help="leave out the library's own test suites (test/, tests/, test_*.py)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="passes over the library at most, when --max-mb asks for more text "
                             "than one pass has; repeats are tagged in 'source' (default 1)")
    parser.add_argument("--stdlib-dir", default=None,
                        help=f"library folder to read (default: this Python's, {stdlib_dir()})")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    stats = build_corpus(args.output, args.max_mb, kinds, args.exclude_tests, args.repeat,
                         args.stdlib_dir)
    print(f"wrote {args.output}: {stats['documents']} documents, {stats['mb']:.2f} MB, "
          f"{stats['passes']} pass(es) over the standard library")
    if args.max_mb is not None and not stats["full"]:
        print(f"note: the standard library gave only {stats['mb']:.2f} MB in {stats['passes']} "
              f"pass(es), short of --max-mb {args.max_mb:g}; raise --repeat (repeats are exact "
              "duplicates) or add --kinds text", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    from megatron.cli.guard import run_main
    return run_main(_main, "corpus.py", argv)


if __name__ == "__main__":
    raise SystemExit(main())
