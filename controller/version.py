"""Versions: the package's, and the harness's (what auto-update compares).

The harness version is the package version plus a digest of everything a harness process
loads from this tree, so any change to the code agents run makes every recorded harness
version stale. "Everything" is derived, not listed: the harness entry points (the
`hive-ag3nt` / `hive-m1nd` scripts of pyproject.toml, or of the installed distribution's
metadata) and every module of `harness/` are the roots, and the import graph is walked
from there with `ast`, our packages only. Imports inside functions count (the harness
imports its page and its MCP server lazily); imports under `if TYPE_CHECKING:` do not
(they never run). The parents' `__init__.py` count, as Python runs them. Beside the
modules, the agent page's assets: its template loader and its `/static` mount serve the
whole of `ui/templates/` and `ui/static/`, so both directories are hashed whole.

A module loaded only by name at run time (`importlib.import_module`) would be missed:
there is none, and a test checks that the walk covers what Python really imports.
Measured on the shared 2-core machine: 24 modules (~3,200 lines) and 18 assets, median
27 ms, two thirds of it `ast.parse`; computed once, on first use (`harness_version()`),
so the `hive` client, which imports settings, never pays it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

__all__ = ["VERSION", "harness_digest", "harness_files", "harness_version"]

DIST = "hyperhive"
ROOT = Path(__file__).resolve().parent.parent
HARNESS_SCRIPTS = ("hive-ag3nt", "hive-m1nd")
ASSET_DIRS = ("ui/templates", "ui/static")


def _version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _entry_modules(root: Path) -> list[str]:
    """The modules the harness scripts start in: this tree's pyproject.toml when it is a
    checkout, else the installed distribution's entry points."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
        targets = [str(scripts[name]) for name in HARNESS_SCRIPTS if name in scripts]
    else:
        try:
            points = metadata.distribution(DIST).entry_points
        except metadata.PackageNotFoundError:
            points = metadata.EntryPoints()
        targets = [p.value for p in points if p.name in HARNESS_SCRIPTS]
    return [target.partition(":")[0].strip() for target in targets]


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, package: str) -> Iterator[str]:
    """The names a module may import when it runs: `import a.b`, `from a import b` (b may
    be a submodule, so both `a` and `a.b`), relative imports resolved against `package`.

    Imports are statements, so only statement bodies are walked (never expressions):
    that is most of the cost of an `ast.NodeVisitor` here."""
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, ()))
            # except clauses and match cases are not statements, but hold statements
            for clause in [*getattr(node, "handlers", ()), *getattr(node, "cases", ())]:
                todo.extend(clause.body)


def _walk(root: Path, roots: Iterable[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    seen: set[str] = set()
    todo = [name for start in roots for name in _with_parents(start.removesuffix(".__init__"))]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(root, name) if name else None
        if path is None:
            continue  # not ours (stdlib, a dependency) or a name inside a module
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_bytes(), filename=str(path))
        todo.extend(
            parent for imported in _imports(tree, package) for parent in _with_parents(imported)
        )
    return found


def harness_files(root: Path = ROOT) -> list[Path]:
    """Every file of the tree at `root` that a harness process loads or serves, sorted."""
    harness = [f"harness.{p.stem}" for p in (root / "harness").glob("*.py")]
    modules = _walk(root, [*_entry_modules(root), *harness])
    assets = [p for d in ASSET_DIRS for p in (root / d).rglob("*") if p.is_file()]
    return sorted({*modules.values(), *assets})


def harness_digest(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for path in harness_files(root):
        rel = path.relative_to(root).as_posix().encode()
        # The length prefixes keep (name, content) pairs from running into each other.
        content = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(rel), rel, len(content)))
        digest.update(content)
    return digest.hexdigest()[:12]


@functools.cache
def harness_version() -> str:
    """The version running agents are compared against; computed once, when first asked
    (the `hive` client imports settings but never needs it)."""
    return f"{VERSION}+{harness_digest()}"


VERSION = _version()
