"""The git half of the gate: applied.git refuses pushes (the real `git push`, the real
hook), and its ref is read as git wrote it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitstore.errors import UnknownRevError
from gitstore.store import GitStore
from tests.helpers import GIT_ENV, Clone, git


def _push(
    clone: Clone, remote: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", str(remote), "HEAD:refs/heads/main"],
        cwd=clone.path,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
    )


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref")


def test_a_push_into_applied_git_is_refused_with_where_to_push_instead(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.applied_path)
    clone.add_agent("mallory")
    clone.commit("let me in")
    before = _refs(store.applied_path)
    pushed = _push(clone, store.applied_path)
    assert pushed.returncode != 0
    assert "pre-receive hook declined" in pushed.stderr
    assert "applied.git does not accept pushes" in pushed.stderr
    assert f"git push {store.proposed_path} HEAD:refs/heads/<branch>" in pushed.stderr
    assert "hive approve N" in pushed.stderr
    assert _refs(store.applied_path) == before
    # A new branch is refused as well: no ref of applied.git moves by a push.
    branch = subprocess.run(
        ["git", "push", str(store.applied_path), "HEAD:refs/heads/side"],
        cwd=clone.path,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
    )
    assert branch.returncode != 0
    assert _refs(store.applied_path) == before


def test_a_pushers_global_hooks_path_cannot_route_around_the_hook(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.applied_path)
    clone.write("notes/x.md", "x")
    clone.commit("x")
    empty = tmp_path / "no-hooks"
    empty.mkdir()
    global_config = tmp_path / "gitconfig"
    global_config.write_text(f"[core]\n\thooksPath = {empty}\n")
    before = _refs(store.applied_path)
    pushed = _push(clone, store.applied_path, {"GIT_CONFIG_GLOBAL": str(global_config)})
    assert pushed.returncode != 0, pushed.stderr
    assert _refs(store.applied_path) == before


def test_the_hook_is_installed_again_at_start_for_an_existing_state_dir(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    hook = store.applied_path / "hooks" / "pre-receive"
    hook.unlink()  # a state dir from before the gate
    (store.applied_path / "config").write_text(
        (store.applied_path / "config").read_text().replace("hooksPath", "unrelated")
    )
    reopened = GitStore(tmp_path / "state")
    assert hook.exists() and os.access(hook, os.X_OK)
    clone = Clone(tmp_path / "clone", reopened.applied_path)
    clone.write("notes/x.md", "x")
    clone.commit("x")
    assert _push(clone, reopened.applied_path).returncode != 0
    # Pushing to the proposed repo is untouched by any of this.
    assert _push(clone, reopened.proposed_path).returncode == 0


@pytest.mark.anyio
async def test_the_applied_ref_is_read_from_the_loose_file_or_packed_refs(
    tmp_path: Path,
) -> None:
    store = GitStore(tmp_path / "state")
    head = git(store.applied_path, "rev-parse", "main")
    assert await store.applied_ref() == head
    git(store.applied_path, "pack-refs", "--all")  # what a `git gc` does
    assert not (store.applied_path / "refs" / "heads" / "main").exists()
    assert await store.applied_ref() == head
    git(store.applied_path, "update-ref", "-d", "refs/heads/main")
    with pytest.raises(UnknownRevError):
        await store.applied_ref()
