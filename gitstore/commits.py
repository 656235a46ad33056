"""Commits hive-c0re writes into the proposed repo on an agent's behalf (e.g. spawn).

They start from applied `main` (mirrored as `refs/hive/applied`), so the resulting
approval's plan touches only the files written here. Blocking helpers; `GitStore` calls
them under its lock, after mirroring applied `main`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pygit2

from gitstore.repos import APPLIED_MIRROR, lookup_commit, ref_target

__all__ = ["commit_files", "point_branch"]


def commit_files(
    repo: pygit2.Repository,
    branch: str,
    files: Mapping[str, bytes],
    message: str,
    author: tuple[str, str],
) -> str:
    """Commit `files` over applied `main` onto `refs/heads/<branch>` (replacing it)."""
    base = ref_target(repo, APPLIED_MIRROR)
    index = pygit2.Index()
    index.read_tree(lookup_commit(repo, str(base)).tree)
    for path, data in files.items():
        blob = repo.create_blob(data)
        index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    who = pygit2.Signature(*author)
    sha = repo.create_commit(None, who, who, message, tree, [base])
    repo.create_reference_direct(f"refs/heads/{branch}", sha, True, message)
    return str(sha)


def point_branch(repo: pygit2.Repository, branch: str, sha: str) -> None:
    """Make `refs/heads/<branch>` point at an existing commit of `repo`."""
    commit = lookup_commit(repo, sha)
    repo.create_reference_direct(f"refs/heads/{branch}", commit.id, True)
