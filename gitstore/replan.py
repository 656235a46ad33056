"""Which pending plans a move of applied `main` can change, recomputed; the rest kept.

A plan of `sha` against applied `base` depends on the merge of the two. When applied
moves from `base` to `new`, that merge can only come out differently for the paths both
sides changed, so a plan is recomputed when
- its merge base with applied changed (the branch now shares different history), or
- the paths it touches (`Plan.touched`) overlap the paths applied changed, or
- applied gained or lost an agent while the branch touches an agent (port collisions,
  the names the runtime accepts, are judged over the whole set of names).
Otherwise the plan is still true word for word, and only its base is brought forward.
A move costs one tree diff and one walk of the landed commits per distinct old base, and
a walk of each branch's own few commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pygit2

from gitstore.errors import GitStoreError, UnknownRevError
from gitstore.limits import Limits
from gitstore.plan import NameCheck, Plan, compute_plan, touched_paths, unplannable
from gitstore.repos import APPLIED_MIRROR, lookup_commit, ref_target
from gitstore.tree import tree_revs

__all__ = ["PlannedAt", "Replanned", "replan"]


@dataclass(frozen=True)
class PlannedAt:
    """A pending approval's plan, as stored: what it was planned against."""

    id: int
    sha: str
    base: str
    merge_base: str
    touched: tuple[str, ...]


@dataclass(frozen=True)
class Replanned:
    """A pending approval brought up to applied `main`: a new plan, or None when the old
    one is still true (only its base moves)."""

    id: int
    base: str
    plan: Plan | None


@dataclass(frozen=True)
class _Move:
    """What applied did since one old base: the paths, the names, the new commits."""

    changed: set[str]
    names_changed: bool
    landed: set[pygit2.Oid] | None  # the commits new has and old lacks; None: not forward


def _move(repo: pygit2.Repository, old: str, new: pygit2.Commit) -> _Move:
    try:
        before = lookup_commit(repo, old)
    except UnknownRevError:
        return _Move({"*"}, True, None)
    names_changed = set(tree_revs(before.tree)) != set(tree_revs(new.tree))
    landed: set[pygit2.Oid] | None = None
    if repo.descendant_of(new.id, before.id):
        walker = repo.walk(new.id)
        walker.hide(before.id)
        landed = {c.id for c in walker}
    return _Move(set(touched_paths(repo, before.tree, new.tree)), names_changed, landed)


def _same_merge_base(repo: pygit2.Repository, planned: PlannedAt, move: _Move) -> bool:
    """Whether `planned`'s merge base with applied is what it was.

    When applied only moved forward, the common history can only have grown by commits
    that landed *and* are the branch's own (it was built on one that landed): a walk of
    the branch's few commits since its merge base, instead of a merge-base search per
    approval (measured: ~0.7 ms each after a hundred merges, per approval, per move;
    a pass over 100 pending approvals went from up to 120 ms to 10 ms)."""
    if move.landed is None or not planned.merge_base:
        return False
    walker = repo.walk(lookup_commit(repo, planned.sha).id)
    walker.hide(lookup_commit(repo, planned.merge_base).id)
    return not any(c.id in move.landed for c in walker)


def _stale(planned: PlannedAt, move: _Move) -> bool:
    touched = set(planned.touched)
    return (
        "*" in touched
        or "*" in move.changed
        or bool(touched & move.changed)
        or (move.names_changed and any(t.startswith("agents/") for t in touched))
    )


def replan(
    repo: pygit2.Repository,
    planned: Sequence[PlannedAt],
    name_problem: NameCheck | None,
    limits: Limits | None = None,
) -> tuple[Replanned, ...]:
    """Bring every plan in `planned` up to applied `main` as mirrored in the proposed
    `repo` (the caller mirrors it first)."""
    head = lookup_commit(repo, str(ref_target(repo, APPLIED_MIRROR)))
    moves: dict[str, _Move] = {}
    out: list[Replanned] = []
    for p in planned:
        if p.base == str(head.id):
            continue
        move = moves.get(p.base)
        if move is None:
            move = moves[p.base] = _move(repo, p.base, head)
        try:
            stale = _stale(p, move) or not _same_merge_base(repo, p, move)
        except UnknownRevError:
            continue  # its commit is gone (a gc'd branch): nothing to plan
        plan: Plan | None = None
        if stale:
            try:
                plan = compute_plan(repo, p.sha, name_problem, limits)
            except (GitStoreError, pygit2.GitError) as exc:
                # One commit git cannot read is its own approval's error, planned at this
                # head so the next move does not retry it, and never the others'.
                plan = unplannable(p.sha, str(exc)[:300], str(head.id))
        out.append(Replanned(p.id, str(head.id), plan))
    return tuple(out)
