"""Imports flow one way: `hyperhive` (the roots) -> `ui` -> `controller` -> `reconcilers`
-> `gitstore`; the harness reaches the rest only through leaf modules (the socket
protocol, the fan-out, names), which import nothing of ours.

Read from the source with `ast`, every import statement counted, also those inside
functions (a lazy import is still a dependency); only `if TYPE_CHECKING:` blocks are
left out, because they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hyperhive", "ui", "controller", "reconcilers", "gitstore", "harness")
# A package may import the packages after it in its own row.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "hyperhive": ("ui", "controller", "reconcilers", "gitstore", "harness"),
    "ui": ("controller", "reconcilers", "gitstore", "harness"),
    "controller": ("reconcilers", "gitstore"),
    "reconcilers": ("gitstore",),
    "gitstore": (),
    "harness": (),  # besides leaf modules, see below
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(node, field, []))
        for clause in [*getattr(node, "handlers", []), *getattr(node, "cases", [])]:
            yield from _statements(clause.body)


def imports_of(name: str) -> set[str]:
    """The modules of ours that `name` imports (a `from m import x` of a submodule counts
    as that submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _statements(ast.parse(path.read_text()).body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = targets or [base]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _package(name: str) -> str:
    return name.split(".", 1)[0]


def is_leaf(name: str) -> bool:
    """A module that imports nothing of ours, under a package `__init__` that does not."""
    parent = _package(name)
    return not imports_of(name) and (parent == name or not imports_of(parent))


def test_every_import_flows_with_the_layers() -> None:
    wrong = []
    for name in MODULES:
        here = _package(name)
        for target in sorted(imports_of(name)):
            there = _package(target)
            if there == here or there in MAY_IMPORT[here]:
                continue
            if here == "harness" and is_leaf(target):
                continue
            wrong.append(f"{name} imports {target} ({here} -> {there})")
    assert wrong == []


def test_the_harness_reaches_other_packages_only_through_leaf_modules() -> None:
    reached = {
        target
        for name in MODULES
        if _package(name) == "harness"
        for target in imports_of(name)
        if _package(target) != "harness"
    }
    assert "controller.protocol" in reached
    assert {t for t in reached if not is_leaf(t)} == set()
    assert "controller.bus" not in reached and "controller.store" not in reached


def test_there_is_no_cycle_between_our_packages() -> None:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for name in MODULES:
        for target in imports_of(name):
            if _package(target) != _package(name):
                graph[_package(name)].add(_package(target))

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    cycles = [c for p in PACKAGES if (c := cycle_from(p, [p]))]
    assert cycles == []


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    """The checker itself: an import inside a function is found; one under
    `if TYPE_CHECKING:` is not."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import ui.views\n"
        "def f():\n    from ui import dashboard\n"
    )
    found = {
        ast.unparse(n) for n in _statements(tree.body) if isinstance(n, ast.Import | ast.ImportFrom)
    }
    assert "from ui import dashboard" in found
    assert "import ui.views" not in found


def test_the_harness_loop_and_page_load_no_pydantic() -> None:
    """pydantic (~12 MB, ~60 ms) is the MCP server's, not the turn loop's or the page's:
    the shared modules (protocol, fan-out) import its encoder only where they use it."""
    probe = (
        "import sys, hyperhive.harness, harness.agent, ui.agent_page; "
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    assert loaded == "[]"


# The sockets' and the dashboard's adapters, by what they serve.
ADAPTERS = {
    "controller.admin": "host.sock",
    "controller.agent_api": "agent sockets",
    "ui.dashboard": "dashboard",
    "ui.views": "dashboard",
}


def test_the_adapters_go_through_the_operations_never_through_each_other() -> None:
    """host.sock, the agent sockets and the dashboard each translate requests into calls
    on `controller.operations`; none imports another's (the dashboard once called a host
    socket handler)."""
    crossing = [
        f"{name} imports {target}"
        for name in ADAPTERS
        for target in sorted(imports_of(name))
        if target in ADAPTERS and ADAPTERS[target] != ADAPTERS[name]
    ]
    assert crossing == []
    assert all("controller.operations" in imports_of(name) for name in ADAPTERS)
