"""Commits hive-c0re writes into the proposed repo on an agent's behalf (e.g. spawn).

They start from applied `main` (mirrored as `refs/hive/applied`), so the resulting
approval's plan touches only the files written here. Blocking helpers; `GitStore` calls
them under its lock, after mirroring applied `main`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pygit2

from gitstore.errors import GitStoreError
from gitstore.repos import APPLIED_MIRROR, is_ancestor_or_self, lookup_commit, ref_target

__all__ = ["commit_files", "commit_rollback", "point_branch"]


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


class RollbackError(GitStoreError):
    """Raised when a rollback's target is not an earlier commit of applied `main`."""


def commit_rollback(
    applied: pygit2.Repository,
    proposed: pygit2.Repository,
    head: pygit2.Oid,
    to: str | None,
    message: str,
    author: tuple[str, str],
) -> tuple[str, str, str]:
    """Commit, on proposed `refs/heads/rollback/<short-sha>`, a commit whose tree is the
    applied commit `to`'s tree and whose parent is applied `main` (`head`, mirrored into
    proposed first): approving it puts the tree back as it was at `to`, through the
    normal gate. `to` None: the first parent of `head`. Returns (ref, sha, full `to`)."""
    current = lookup_commit(applied, str(head))
    if to is None:
        if not current.parents:
            raise RollbackError(
                "applied main has a single commit: there is nothing to roll back to"
            )
        target = current.parents[0]
    else:
        target = lookup_commit(applied, to)
    if target.id == head:
        raise RollbackError(f"{str(target.id)[:12]} is applied main itself: nothing to roll back")
    if not is_ancestor_or_self(applied, head, str(target.id)):
        raise RollbackError(
            f"{str(target.id)[:12]} is not on applied main: roll back only to one of its "
            "earlier commits (`git log refs/hive/applied` in a clone)"
        )
    if target.tree_id == current.tree_id:
        raise RollbackError(
            f"applied main's tree is already the tree of {str(target.id)[:12]}: nothing to change"
        )
    short = str(target.id)[:12]
    ref = f"refs/heads/rollback/{short}"
    who = pygit2.Signature(*author)
    sha = proposed.create_commit(None, who, who, message, target.tree_id, [head])
    proposed.create_reference_direct(ref, sha, True, message.splitlines()[0])
    return ref, str(sha), str(target.id)
