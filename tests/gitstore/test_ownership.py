"""`gitstore` is the only owner of pygit2: no other module of the tree imports it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Everything of ours; what the tooling installs or caches is not.
SKIP = {".venv", ".cache", ".git", "node_modules", "result"}


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if not SKIP.intersection(p.relative_to(ROOT).parts))


def pygit2_imports(source: str) -> list[int]:
    """Lines of `source` that import pygit2 (statements, or `import_module("pygit2")`)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        names: list[str]
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            literal = first.value if isinstance(first, ast.Constant) else None
            is_import = called in ("import_module", "__import__") and isinstance(literal, str)
            names = [str(literal)] if is_import else []
        else:
            continue
        if any(n == "pygit2" or n.startswith("pygit2.") for n in names):
            lines.append(node.lineno)
    return lines


def test_the_guard_sees_every_way_of_importing_pygit2() -> None:
    source = (
        "import pygit2\nfrom pygit2 import Oid\nimport pygit2.enums as e\n"
        "import importlib\nimportlib.import_module('pygit2')\n__import__('pygit2')\n"
        "import pygit2x\nfrom . import pygit2\n"
    )
    assert pygit2_imports(source) == [1, 2, 3, 5, 6]


def test_no_module_outside_gitstore_imports_pygit2() -> None:
    sources = _sources()
    assert any(p.parts[-2:] == ("gitstore", "store.py") for p in sources)
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sources
        if path.relative_to(ROOT).parts[0] != "gitstore"
        for line in pygit2_imports(path.read_text())
    ]
    assert offenders == []
