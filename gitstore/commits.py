"""Commits hive-c0re writes into the proposed repo on an agent's behalf (e.g. spawn).

They start from applied `main` (mirrored as `refs/hive/applied`), so the resulting
approval's plan touches only the files written here.
"""

from __future__ import annotations

from collections.abc import Mapping

import pygit2

from gitstore.repos import APPLIED_MIRROR, GitStore, ref_target

__all__ = ["commit_files", "point_branch"]


def commit_files(
    store: GitStore, branch: str, files: Mapping[str, bytes], message: str, author: tuple[str, str]
) -> str:
    """Commit `files` over applied `main` onto `refs/heads/<branch>` (replacing it)."""
    with store.lock:
        store.mirror_applied()
        repo = store.proposed
        base = ref_target(repo, APPLIED_MIRROR)
        index = pygit2.Index()
        index.read_tree(store.commit(repo, str(base)).tree)
        for path, data in files.items():
            blob = repo.create_blob(data)
            index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(repo)
        who = pygit2.Signature(*author)
        sha = repo.create_commit(None, who, who, message, tree, [base])
        repo.create_reference_direct(f"refs/heads/{branch}", sha, True, message)
        return str(sha)


def point_branch(store: GitStore, branch: str, sha: str) -> None:
    """Make `refs/heads/<branch>` point at an existing proposed commit."""
    with store.lock:
        commit = store.commit(store.proposed, sha)
        store.proposed.create_reference_direct(f"refs/heads/{branch}", commit.id, True)
