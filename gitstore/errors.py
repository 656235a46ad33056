"""What can go wrong in the repositories, as our own exceptions.

pygit2's exceptions (`GitError`, the `KeyError`/`ValueError` of a lookup) never leave
`gitstore`: `GitStore` maps them here at the boundary, so callers catch one family.

A full disk is told apart from other failures, because the person who reads the error
must act on it and nothing was changed: libgit2 says "failed to write out file: No space
left on device" for a tree or commit but loses the error for a blob ("no error", measured
with pygit2 1.18 on a full tmpfs), so a failure while the filesystem has less than
`FULL_BELOW` bytes free counts as one too.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "FULL_BELOW",
    "GitStoreError",
    "MergeConflictError",
    "NoSpaceError",
    "RefMovedError",
    "UnknownRevError",
    "no_space",
]

FULL_BELOW = 1024 * 1024


class GitStoreError(Exception):
    """Raised when a repository operation fails in a way the caller should report."""


class UnknownRevError(GitStoreError):
    """Raised when a sha or ref does not name a commit in the repository."""


class MergeConflictError(GitStoreError):
    """Raised when the proposed sha does not merge cleanly into applied `main`."""


class RefMovedError(GitStoreError):
    """Raised when applied `main` is no longer where the caller expected it."""


class NoSpaceError(GitStoreError):
    """Raised when a repository write failed because its disk is full."""


def no_space(exc: BaseException, path: Path) -> NoSpaceError | None:
    """A `NoSpaceError` if `exc`, raised by git work under `path`, came of a full disk."""
    said = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    said = said or "No space left on device" in str(exc)
    try:
        stat = os.statvfs(path)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    if not said and (free is None or free >= FULL_BELOW):
        return None
    left = "" if free is None else f" ({free // 1024} KiB free)"
    return NoSpaceError(
        f"no space left on device: cannot write the repositories in {path}{left}; "
        "nothing was changed. Free space on its filesystem and try again."
    )
