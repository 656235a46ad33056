"""The diffs the dashboard shows on approval cards, kept in an LRU.

The diff itself (`gitstore.diff`: files, hunks, lines) is computed by the `GitStore`. Both
ends of an approval's diff are immutable commits, so a rendered diff is cached by
`(base, sha)` and the dashboard never recomputes it; the misses of one page are fetched
in one worker-thread hop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from gitstore.diff import ApprovalDiff, FileDiff, Hunk, Line

__all__ = ["ApprovalDiff", "DiffCache", "DiffSource", "FileDiff", "Hunk", "Line"]


class DiffSource(Protocol):
    """What computes diffs: the `GitStore`, or the operations in front of it."""

    async def approval_diffs(self, pairs: Sequence[tuple[str, str]]) -> Sequence[ApprovalDiff]: ...


class DiffCache:
    """An LRU of rendered diffs; keys are immutable commit pairs, so entries never go stale."""

    def __init__(self, git: DiffSource, size: int = 512) -> None:
        self.git = git
        self.size = size
        self._entries: OrderedDict[tuple[str, str], ApprovalDiff] = OrderedDict()

    async def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[ApprovalDiff]:
        """The diffs of `(base, sha)` pairs, in order; errors are diffs too, never cached."""
        found: dict[tuple[str, str], ApprovalDiff] = {}
        for key in pairs:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                found[key] = entry
        missing = list(dict.fromkeys(k for k in pairs if k not in found))
        if missing:
            for key, made in zip(missing, await self.git.approval_diffs(missing), strict=True):
                found[key] = made
                if made.error is None:
                    self._entries[key] = made
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return [found[key] for key in pairs]

    async def get(self, base: str, sha: str) -> ApprovalDiff:
        return (await self.get_many([(base, sha)]))[0]
