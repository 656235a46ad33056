"""What can go wrong in the repositories, as our own exceptions.

pygit2's exceptions (`GitError`, the `KeyError`/`ValueError` of a lookup) never leave
`gitstore`: `GitStore` maps them here at the boundary, so callers catch one family.
"""

from __future__ import annotations

__all__ = ["GitStoreError", "MergeConflictError", "RefMovedError", "UnknownRevError"]


class GitStoreError(Exception):
    """Raised when a repository operation fails in a way the caller should report."""


class UnknownRevError(GitStoreError):
    """Raised when a sha or ref does not name a commit in the repository."""


class MergeConflictError(GitStoreError):
    """Raised when the proposed sha does not merge cleanly into applied `main`."""


class RefMovedError(GitStoreError):
    """Raised when applied `main` is no longer where the caller expected it."""
