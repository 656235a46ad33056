"""The harness version: a digest of everything a harness loads, on copies of the tree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller import version

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("hyperhive", "controller", "reconcilers", "gitstore", "harness", "ui")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of this checkout's packages and pyproject.toml: tests edit it, never ours."""
    root = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _touch(path: Path) -> None:
    comment = "\n# changed\n" if path.suffix == ".py" else "\n"
    path.write_text(path.read_text() + comment)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "changed",
    [
        "gitstore/names.py",
        "controller/protocol.py",
        "controller/fanout.py",
        "controller/errors.py",
        "hyperhive/harness.py",
        "ui/agent_page.py",
        "ui/sse.py",
        "ui/templates/agent.html",
        "ui/templates/base.html",
        "ui/static/agent.js",
        "harness/claude.py",
    ],
)
def test_a_change_to_anything_the_harness_loads_changes_the_harness_version(
    tree: Path, changed: str
) -> None:
    before = version.harness_digest(tree)
    _touch(tree / changed)
    assert version.harness_digest(tree) != before


@pytest.mark.parametrize(
    "changed",
    [
        "controller/hive.py",
        "controller/bus.py",
        "controller/store.py",
        "reconcilers/agents.py",
        "ui/dashboard.py",
        "gitstore/plan.py",
    ],
)
def test_a_change_to_a_daemon_only_module_keeps_the_harness_version(
    tree: Path, changed: str
) -> None:
    before = version.harness_digest(tree)
    _touch(tree / changed)
    assert version.harness_digest(tree) == before


def test_the_walk_covers_every_module_python_imports_for_the_harness() -> None:
    """Python itself is the judge: importing every module of the set (the lazy imports
    included) must load nothing of ours outside it."""
    files = version.harness_files()
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in files
        if p.suffix == ".py"
    )
    assert {"ui.agent_page", "harness.mcp_server", "hyperhive.harness", "gitstore.names"} <= set(
        modules
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"ours = [m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}]\n"
        "print(json.dumps(sorted(ours)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert loaded - set(modules) == set()
    assert not {"controller.hive", "hyperhive.daemon", "reconcilers.agents"} & set(modules)


def test_the_walk_follows_relative_lazy_and_entry_point_imports_but_not_type_checking(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": '[project.scripts]\nhive-ag3nt = "roots.agent:main"\n'
            'hive-c0re = "daemon.cli:main"\n',
            "roots/__init__.py": "",
            "roots/agent.py": "def main() -> None:\n    from harness import loop\n",
            "harness/__init__.py": "",
            "harness/loop.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import util\n"
                "from .sub.deep import thing\n"
                "if TYPE_CHECKING:\n    import daemon.big\nelse:\n    import shared.rt\n"
                "try:\n    pass\nexcept ImportError:\n    import shared.fallback\n"
            ),
            "harness/util.py": "import json\n",
            "harness/sub/__init__.py": "",
            "harness/sub/deep.py": "thing = 1\n",
            "shared/__init__.py": "",
            "shared/rt.py": "",
            "shared/fallback.py": "",
            "daemon/__init__.py": "",
            "daemon/cli.py": "",
            "daemon/big.py": "",
        },
    )
    found = {p.relative_to(tmp_path).as_posix() for p in version.harness_files(tmp_path)}
    assert found == {
        "roots/__init__.py",
        "roots/agent.py",
        "harness/__init__.py",
        "harness/loop.py",
        "harness/util.py",
        "harness/sub/__init__.py",
        "harness/sub/deep.py",
        "shared/__init__.py",
        "shared/rt.py",
        "shared/fallback.py",
    }


def test_the_harness_version_is_cheap_to_compute_at_start_up() -> None:
    started = time.perf_counter()
    digest = version.harness_digest()
    elapsed = time.perf_counter() - started
    assert version.harness_version() == f"{version.VERSION}+{digest}"
    # ~15-40 ms on the shared 2-core machine; the bound only catches a runaway walk
    assert elapsed < 1.0
