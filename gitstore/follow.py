"""Proposed `main` follows applied `main`, so a clone's `git pull --rebase` lands on what runs.

After applied `main` moves, proposed `main` is fast-forwarded to it when it is an
ancestor (nothing is lost: every commit it had is in applied). When proposed `main` has
commits applied lacks, it is left alone: `ahead` when applied is an ancestor of it (a
proposal pushed to `main`, pending), `diverged` otherwise (that proposal and another
approval both moved on), which hive-c0re reports.

The fast-forward is a real compare-and-swap (`git update-ref <ref> <new> <old>` verifies
the old value under git's ref lock): a push to proposed `main` landing at the same moment
is never overwritten. libgit2, as bound by pygit2, has no conditional ref update.
"""

from __future__ import annotations

import enum
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import pygit2

from gitstore.repos import MAIN, copy_objects, lookup_commit

__all__ = ["MainState", "ProposedMain", "ProposedState", "follow_main"]


class MainState(enum.StrEnum):
    FOLLOWING = "following"  # proposed main is applied main
    AHEAD = "ahead"  # proposed main is applied main plus commits pending approval
    DIVERGED = "diverged"  # neither contains the other: left alone, reported


@dataclass(frozen=True)
class ProposedMain:
    sha: str
    state: MainState
    followed_from: str | None = None  # set when this call fast-forwarded it

    def as_json(self) -> dict[str, str]:
        return {"sha": self.sha, "state": self.state.value}


@dataclass(frozen=True)
class ProposedState:
    """The proposed repo as one proposals pass reads it: `main` followed first, then
    every branch head, and which of those heads (and the given shas) applied contains."""

    head: str  # applied `main`, as hive-c0re stands by it
    main: ProposedMain
    heads: Mapping[str, str]
    applied: frozenset[str]


def follow_main(
    applied: pygit2.Repository, proposed: pygit2.Repository, applied_sha: str
) -> ProposedMain:
    """Fast-forward proposed `main` to `applied_sha` when it is an ancestor of it."""
    target = lookup_commit(applied, applied_sha).id
    ref = proposed.references.get(MAIN)
    current = ref.resolve().target if ref is not None else None
    if current == target:
        return ProposedMain(applied_sha, MainState.FOLLOWING)
    copy_objects(applied, proposed, target)
    if isinstance(current, pygit2.Oid):
        if proposed.descendant_of(current, target):
            return ProposedMain(str(current), MainState.AHEAD)
        if not proposed.descendant_of(target, current):
            return ProposedMain(str(current), MainState.DIVERGED)
    old = str(current) if isinstance(current, pygit2.Oid) else "0" * 40
    moved = subprocess.run(
        [
            "git",
            "--git-dir",
            proposed.path,
            "update-ref",
            "-m",
            "hive: follow applied main",
            MAIN,
            applied_sha,
            old,
        ],
        capture_output=True,
        text=True,
    )
    if moved.returncode != 0:
        # Someone pushed to main meanwhile: report what is there now, decide next pass.
        now = proposed.references[MAIN].resolve().target
        state = MainState.AHEAD if proposed.descendant_of(now, target) else MainState.DIVERGED
        return ProposedMain(str(now), MainState.FOLLOWING if now == target else state)
    return ProposedMain(applied_sha, MainState.FOLLOWING, followed_from=old)
