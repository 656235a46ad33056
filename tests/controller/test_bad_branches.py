"""One bad branch is that branch's error: every other branch still becomes an approval."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controller.hive import Hive
from gitstore.limits import Limits
from tests.helpers import Clone, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


def raw_object(repo: Path, kind: str, data: bytes) -> str:
    out = subprocess.run(
        ["git", "hash-object", "--literally", "-t", kind, "-w", "--stdin"],
        cwd=repo,
        input=data,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def slash_branch(repo: Path, branch: str) -> str:
    """A branch adding `agents/odd/` with an entry named `x/y`: written into proposed.git
    directly (what a repo from before fsck-on-receive could hold; a push is refused)."""
    blob = raw_object(repo, "blob", b'description = "odd"\n')
    odd = raw_object(
        repo,
        "tree",
        b"100644 agent.toml\0" + bytes.fromhex(blob) + b"100644 x/y\0" + bytes.fromhex(blob),
    )
    agents = subprocess.run(
        ["git", "cat-file", "tree", "main:agents"], cwd=repo, capture_output=True, check=True
    ).stdout
    agents_tree = raw_object(repo, "tree", agents + b"40000 odd\0" + bytes.fromhex(odd))
    root = raw_object(repo, "tree", b"40000 agents\0" + bytes.fromhex(agents_tree))
    sha = git(repo, "commit-tree", root, "-p", "main", "-m", "odd entry")
    git(repo, "update-ref", f"refs/heads/{branch}", sha)
    return sha


async def by_ref(hive: Hive) -> dict[str, tuple[str, ...]]:
    return {a.ref: a.errors for a in await hive.approvals.query("pending")}


async def test_a_branch_that_cannot_be_planned_never_stalls_the_branches_after_it(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        proposed = hive.git.proposed_path
        assert git(proposed, "ls-tree", "--name-only", "main") == "agents"
        clone = Clone(short_dir / "clone", proposed)
        clone.write("agents/deep/agent.toml", "description = " + "[" * 1000 + "]" * 1000 + "\n")
        deep = clone.commit("deep toml")
        clone.push("aaa-deep")
        slash_branch(proposed, "aab-slash")
        clone.checkout("zed", "origin/main")
        clone.add_agent("zed")
        clone.commit_push("add zed", "spawn/zed")
        rows = await wait_for(lambda: _all_three(hive), timeout=10)
        assert rows["refs/heads/spawn/zed"] == ()
        assert rows["refs/heads/aaa-deep"] == (
            "agents/deep: agent.toml nests arrays or tables too deeply",
        )
        assert any("'x/y' is not a file name" in e for e in rows["refs/heads/aab-slash"])
        assert deep


async def _all_three(hive: Hive) -> dict[str, tuple[str, ...]] | None:
    rows = await by_ref(hive)
    return rows if len(rows) == 3 else None


async def test_the_limits_in_settings_are_the_limits_every_plan_checks(short_dir: Path) -> None:
    settings = hive_settings(short_dir, limits=Limits(description_chars=10))
    async with running_hive(settings) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice", "a description of more than ten characters")
        clone.commit_push("add alice", "alice")
        rows = await wait_for(lambda: by_ref(hive))
        assert rows["refs/heads/alice"] == (
            "agents/alice: description is 41 characters, more than the limit of 10",
        )
