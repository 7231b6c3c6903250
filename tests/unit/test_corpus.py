"""tools/corpus.py: the standard library as a jsonl corpus, deterministic and size-bounded."""
import json
import os
import shutil

import pytest

from megatron.cli.corpus import build_corpus, iter_documents, main, module_docs, stdlib_dir


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture()
def small_stdlib(tmp_path):
    """A few real standard-library packages copied into their own tree (fast to walk)."""
    root = tmp_path / "lib"
    for package in ("json", "email/mime"):
        shutil.copytree(os.path.join(stdlib_dir(), package), root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "test").mkdir()
    shutil.copy(os.path.join(stdlib_dir(), "colorsys.py"), root / "test" / "test_colors.py")
    (root / "notes.txt").write_text("Plain text notes.\n")
    return str(root)


def test_corpus_is_deterministic_valid_jsonl_and_bounded(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stats = build_corpus(str(first), max_mb=0.4)
    build_corpus(str(second), max_mb=0.4)
    assert first.read_bytes() == second.read_bytes()
    size = first.stat().st_size
    assert 0.3e6 < size <= 0.4e6 and stats["full"] and stats["mb"] == size / 1e6
    docs = _read(first)
    assert len(docs) == stats["documents"] > 5
    assert {d["kind"] for d in docs} == {"source", "docs"}
    assert all(d["text"] and d["source"].startswith("python3.") for d in docs)
    assert [d["source"] for d in docs if d["kind"] == "source"] == sorted(
        d["source"] for d in docs if d["kind"] == "source")
    assert not any("site-packages" in d["source"] for d in docs)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_kinds_tests_and_repeat(small_stdlib, tmp_path):
    out = tmp_path / "c.jsonl"
    one_pass = build_corpus(str(out), kinds=["source"], root=small_stdlib)
    sources = [d["source"].split("/", 1)[1] for d in _read(out)]
    assert "json/__init__.py" in sources and "test/test_colors.py" in sources
    assert all(s.endswith(".py") for s in sources)
    assert sources == sorted(sources)  # folders and files in sorted order, whatever the disk's

    build_corpus(str(out), kinds=["source"], exclude_tests=True, root=small_stdlib)
    assert not any("test" in d["source"] for d in _read(out))

    build_corpus(str(out), kinds=["text"], root=small_stdlib)
    assert [d["source"].split("/", 1)[1] for d in _read(out)] == ["notes.txt"]

    # More than one pass holds: a second pass repeats the same texts, tagged as repeats.
    limit_mb = one_pass["mb"] * 1.5
    stats = build_corpus(str(out), max_mb=limit_mb, kinds=["source"], repeat=3,
                         root=small_stdlib)
    docs = _read(out)
    assert stats["passes"] == 2 and stats["full"] and out.stat().st_size <= limit_mb * 1e6
    repeats = [d for d in docs if d["source"].endswith("#repeat=2")]
    assert repeats and repeats[0]["text"] == docs[0]["text"]
    assert repeats[0]["source"] == docs[0]["source"] + "#repeat=2"
    # Without --repeat the corpus stops after one pass, short of the limit.
    assert not build_corpus(str(out), max_mb=limit_mb, kinds=["source"], root=small_stdlib)["full"]


def test_docs_come_from_docstrings_without_importing(small_stdlib):
    docs = [d for d in iter_documents(["docs"], root=small_stdlib)
            if d["source"].endswith("json/__init__.py")]
    text = docs[0]["text"]
    assert text.startswith("Help on module json:\n\nJSON (JavaScript Object Notation)")
    assert "def dumps(obj, *, skipkeys=False" in text
    assert "def loads(s, *, cls=None, object_hook=None" in text
    assert "Deserialize ``s``" in text  # the docstring under it
    assert module_docs("x = 1\n", "m") is None
    assert module_docs("def f(:\n", "m") is None  # unparsable files are skipped
    source = 'class A:\n    """About A."""\n    async def go(self, n=1):\n        """Go."""\n'
    assert module_docs(source, "m") == ("Help on module m:\n\nclass A\n    About A.\n\n"
                                        "    async def go(self, n=1)\n        Go.\n")


def test_errors_leave_no_file(tmp_path):
    out = tmp_path / "c.jsonl"
    with pytest.raises(ValueError, match="--kinds"):
        build_corpus(str(out), kinds=["pictures"])
    with pytest.raises(ValueError, match="--max-mb"):
        build_corpus(str(out), max_mb=0)
    with pytest.raises(ValueError, match="--repeat"):
        build_corpus(str(out), repeat=0)
    assert os.listdir(tmp_path) == []


def test_command_line(small_stdlib, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    main(["--output", str(out), "--kinds", "source,docs", "--stdlib-dir", small_stdlib,
          "--max-mb", "50"])
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "short of --max-mb 50" in captured.err
    assert len(_read(out)) > 3
