"""`proposed.git` checks every object a push brings (`receive.fsckObjects`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitstore.store import GitStore
from tests.helpers import GIT_ENV, Clone, git


def malformed_commit(clone: Clone) -> str:
    """A commit whose tree has an entry named `a/b` (written `--literally`: git itself
    never writes one), on top of the clone's HEAD."""
    empty = (
        subprocess.run(
            ["git", "hash-object", "-w", "-t", "blob", "--stdin"],
            cwd=clone.path,
            input=b"x\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    tree = (
        subprocess.run(
            ["git", "hash-object", "--literally", "-w", "-t", "tree", "--stdin"],
            cwd=clone.path,
            input=b"100644 a/b\0" + bytes.fromhex(empty),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    return git(clone.path, "commit-tree", tree, "-p", "HEAD", "-m", "malformed")


def push(clone: Clone, sha: str, branch: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{sha}:refs/heads/{branch}"],
        cwd=clone.path,
        env={**GIT_ENV, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_push_of_a_malformed_tree_is_refused_and_no_ref_moves(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.proposed_path)
    result = push(clone, malformed_commit(clone), "bad")
    assert result.returncode != 0
    assert "fullPathname" in result.stderr or "fsck" in result.stderr, result.stderr
    assert git(store.proposed_path, "branch", "--list", "bad") == ""


def test_a_state_dir_from_before_the_check_gets_it_at_start(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    git(store.proposed_path, "config", "--unset", "receive.fsckObjects")
    clone = Clone(tmp_path / "clone", store.proposed_path)
    sha = malformed_commit(clone)
    GitStore(tmp_path / "state")  # a restart
    assert git(store.proposed_path, "config", "--bool", "receive.fsckObjects") == "true"
    assert push(clone, sha, "bad").returncode != 0


def test_a_well_formed_push_still_lands(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.proposed_path)
    clone.add_agent("alice")
    sha = clone.commit("add alice")
    assert push(clone, sha, "good").returncode == 0
    assert git(store.proposed_path, "rev-parse", "good") == sha
