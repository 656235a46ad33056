"""Plans and approve-by-merge.

A plan says, for every agent, what approving a proposed sha would do to it. It is
computed against the *merge result* (what applied `main` would become), not against the
proposed tree alone, so a branch cut from an old `main` does not plan to destroy agents
added since. The same merge is what `approve` writes, with a compare-and-swap on applied
`main`: an approval computed against one head can never overwrite another's work.

Blocking helpers over pygit2 repositories; `gitstore.store.GitStore` calls them in a
worker thread under its lock and mirrors applied `main` around them.
"""

from __future__ import annotations

import enum
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass

import pygit2

from gitstore.errors import GitStoreError, MergeConflictError, RefMovedError
from gitstore.repos import APPLIED_MIRROR, MAIN, copy_objects, lookup_commit, ref_target, signature
from gitstore.spec import MANAGER, port_for
from gitstore.tree import AgentTree, agent_in, tree_revs

__all__ = ["Action", "NameCheck", "Plan", "PlanStep", "approve_merge", "compute_plan"]


NameCheck = Callable[[str], str | None]


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    NONE = "none"


@dataclass(frozen=True)
class PlanStep:
    agent: str
    action: Action


@dataclass(frozen=True)
class Plan:
    sha: str
    base: str
    steps: tuple[PlanStep, ...]
    errors: tuple[str, ...]
    fast_forward: bool

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(s.agent for s in self.steps if s.action is not Action.NONE)


def _merged_tree(
    repo: pygit2.Repository, base: pygit2.Oid, sha: pygit2.Oid
) -> tuple[pygit2.Tree, bool]:
    """The tree applied `main` would have after merging; raises on conflict."""
    if base == sha or repo.descendant_of(sha, base):
        return lookup_commit(repo, str(sha)).tree, True
    index = repo.merge_commits(base, sha)
    if index.conflicts is not None:
        paths = sorted(
            {
                (ours or theirs or anc).path
                for anc, ours, theirs in index.conflicts
                if (ours or theirs or anc) is not None
            }
        )
        raise MergeConflictError(
            f"merging {str(sha)[:12]} into applied main {str(base)[:12]} conflicts in: "
            + ", ".join(paths)
            + "; rebase the branch onto refs/hive/applied and push again"
        )
    tree_id = index.write_tree(repo)
    tree = repo.get(tree_id)
    assert isinstance(tree, pygit2.Tree)
    return tree, False


def _validate(
    target_revs: dict[str, str],
    changed: dict[str, AgentTree],
    name_problem: NameCheck | None,
) -> list[str]:
    """Errors of the changed agents, and of the tree as a whole (manager, ports).

    Unchanged agents were validated when they were applied, so only changed ones are
    parsed: a one-agent change in a 500-agent tree reads one spec, not a thousand."""
    errors = [f"agents/{name}: {a.error}" for name, a in sorted(changed.items()) if a.error]
    if name_problem is not None:
        for name, agent in sorted(changed.items()):
            problem = name_problem(name)
            if problem and agent.error is None:
                errors.append(f"agents/{name}: {problem}")
    if MANAGER not in target_revs:
        errors.append(f"agents/{MANAGER}: the manager cannot be removed")
    owners: dict[int, list[str]] = {}
    for name in target_revs:
        if name not in changed or changed[name].error is None:
            owners.setdefault(port_for(name), []).append(name)
    for port, names in sorted(owners.items()):
        if len(names) > 1 and set(changed).intersection(names):
            errors.append(
                f"port {port} is shared by {', '.join(sorted(names))}: rename one of them"
            )
    return errors


def compute_plan(repo: pygit2.Repository, sha: str, name_problem: NameCheck | None = None) -> Plan:
    """The plan and validation errors for merging `sha`, a commit of the proposed `repo`,
    into applied `main` as mirrored there (the caller mirrors it first)."""
    commit = lookup_commit(repo, sha)
    base = ref_target(repo, APPLIED_MIRROR)
    try:
        tree, ff = _merged_tree(repo, base, commit.id)
    except MergeConflictError as exc:
        return Plan(sha=sha, base=str(base), steps=(), errors=(str(exc),), fast_forward=False)
    current = tree_revs(lookup_commit(repo, str(base)).tree)
    target = tree_revs(tree)
    changed_specs: dict[str, AgentTree] = {}
    for name, rev in target.items():
        if current.get(name) != rev:
            parsed = agent_in(tree, name)
            assert parsed is not None
            changed_specs[name] = parsed
    steps: list[PlanStep] = []
    for name in sorted(set(current) | set(target)):
        if name not in target:
            action = Action.DESTROY
        elif name not in current:
            action = Action.CREATE
        elif current[name] != target[name]:
            action = Action.UPDATE
        else:
            action = Action.NONE
        steps.append(PlanStep(name, action))
    return Plan(
        sha=sha,
        base=str(base),
        steps=tuple(steps),
        errors=tuple(_validate(target, changed_specs, name_problem)),
        fast_forward=ff,
    )


class _RefLock:
    """An exclusive lock on applied `main` shared by every process that writes it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def approve_merge(
    applied: pygit2.Repository,
    proposed: pygit2.Repository,
    sha: str,
    *,
    expected_base: str | None,
    approval_id: int,
    approver: str,
) -> str:
    """Merge exactly `sha` (a proposed commit) into applied `main`; returns the new sha.

    Fast-forward when `sha` descends from `main`, else a merge commit recording the
    approval. The ref moves only if `main` still equals `expected_base` (when given) and
    nobody moved it while we merged: a compare-and-swap under an exclusive lock.
    """
    with _RefLock(os.path.join(applied.path, "hive-main.lock")):
        repo = applied
        oid = lookup_commit(proposed, sha).id
        copy_objects(proposed, repo, oid)
        ref = repo.references[MAIN]
        base = ref_target(repo, MAIN)
        if expected_base is not None and str(base) != expected_base:
            raise RefMovedError(
                f"applied main moved from {expected_base[:12]} to {str(base)[:12]} "
                "since this approval was planned"
            )
        if base == oid or repo.descendant_of(base, oid):
            raise GitStoreError(f"{sha[:12]} is already applied")
        tree, ff = _merged_tree(repo, base, oid)
        if ff:
            new = oid
        else:
            message = (
                f"hive: apply approval #{approval_id}\n\n"
                f"Approval: {approval_id}\nApproved-by: {approver}\nProposed-sha: {sha}\n"
            )
            new = repo.create_commit(None, signature(), signature(), message, tree.id, [base, oid])
        ref.set_target(new, f"hive: approval #{approval_id} by {approver}")
        return str(new)
