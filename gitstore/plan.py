"""Plans and approve-by-merge.

A plan says, for every agent, what approving a proposed sha would do to it. It is
computed against the *merge result* (what applied `main` would become), not against the
proposed tree alone, so a branch cut from an old `main` does not plan to destroy agents
added since. The same merge is what approve writes (`merge_commit`, then `move_main`, a
compare-and-swap on applied `main`): an approval computed against one head can never
overwrite another's work. A plan also records its merge base and the paths the branch
touches, so when applied `main` moves only the plans it can change are recomputed
(`gitstore.replan`).

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
from gitstore.limits import Limits
from gitstore.repos import (
    APPLIED_MIRROR,
    MAIN,
    copy_objects,
    lookup_commit,
    ref_target,
    signature,
)
from gitstore.shape import agent_dir_problems, deep_paths
from gitstore.spec import MANAGER
from gitstore.tree import (
    FILES,
    AgentTree,
    agent_dirs,
    agent_tree,
    policy_at,
    policy_data,
    tree_revs,
)

__all__ = [
    "Action",
    "NameCheck",
    "Plan",
    "PlanStep",
    "compute_plan",
    "merge_commit",
    "move_main",
    "touched_paths",
    "unplannable",
]

REBASE_HINT = (
    "run `git pull --rebase origin main` in your clone (proposed main follows applied "
    "main), resolve, and push the branch again"
)
# More touched paths than this and a plan is recomputed on every move (a huge branch).
TOUCHED_MAX = 256


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
    mergeable: bool = True
    merge_base: str = ""
    # What the branch changes since its merge base: `agents/<name>` for anything in an
    # agent's dir, else the file's path; ("*",) when there are too many to keep.
    touched: tuple[str, ...] = ()

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
            + "; "
            + REBASE_HINT
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
    return errors


def _path_key(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0] == "agents" and len(parts) > 2 else path


def touched_paths(repo: pygit2.Repository, old: pygit2.Tree, new: pygit2.Tree) -> tuple[str, ...]:
    """What changes from tree `old` to tree `new`, as `Plan.touched` keeps it."""
    keys: set[str] = set()
    for delta in old.diff_to_tree(new).deltas:
        keys.add(_path_key(delta.old_file.path))
        keys.add(_path_key(delta.new_file.path))
        if len(keys) > TOUCHED_MAX:
            return ("*",)
    return tuple(sorted(keys))


def unplannable(sha: str, reason: str, base: str = "") -> Plan:
    """The plan of a commit that could not be planned: one error, never mergeable."""
    return Plan(
        sha=sha,
        base=base,
        steps=(),
        errors=(f"{sha[:12]} could not be planned: {reason}",),
        fast_forward=False,
        mergeable=False,
        touched=("*",),
    )


def compute_plan(
    repo: pygit2.Repository,
    sha: str,
    name_problem: NameCheck | None = None,
    limits: Limits | None = None,
) -> Plan:
    """The plan and validation errors for merging `sha`, a commit of the proposed `repo`,
    into applied `main` as mirrored there (the caller mirrors it first).

    Whatever a pushed tree holds is this plan's error, never an exception: one bad
    branch must not stop the plans of the others."""
    try:
        return _compute_plan(repo, sha, name_problem, limits or Limits())
    except (GitStoreError, pygit2.GitError):
        raise
    except (RecursionError, MemoryError, ValueError, KeyError, TypeError, AssertionError) as exc:
        return unplannable(sha, f"{type(exc).__name__}: {str(exc)[:200]}")


def _compute_plan(
    repo: pygit2.Repository, sha: str, name_problem: NameCheck | None, limits: Limits
) -> Plan:
    commit = lookup_commit(repo, sha)
    base = ref_target(repo, APPLIED_MIRROR)
    found = repo.merge_base(base, commit.id)
    merge_base = str(found) if found is not None else ""
    # Unrelated histories touch everything there is.
    touched = (
        touched_paths(repo, lookup_commit(repo, merge_base).tree, commit.tree)
        if found is not None
        else ("*",)
    )
    try:
        tree, ff = _merged_tree(repo, base, commit.id)
    except MergeConflictError as exc:
        return Plan(
            sha=sha,
            base=str(base),
            steps=(),
            errors=(str(exc),),
            fast_forward=False,
            mergeable=False,
            merge_base=merge_base,
            touched=touched,
        )
    base_tree = lookup_commit(repo, str(base)).tree
    current = tree_revs(base_tree)
    dirs = agent_dirs(tree)
    target = {name: str(entry.id) for name, entry in dirs.items()}
    errors = deep_paths(base_tree, tree, limits)
    # The hive's policy, like an agent's spec, is checked when it changes.
    policy = policy_data(tree)
    if policy is not None and policy_data(base_tree) != policy:
        problem = policy_at(tree)[1]
        if problem is not None:
            errors.append(f"hive.toml: {problem}")
    if len(target) > limits.agents:
        errors.append(
            f"the tree declares {len(target)} agents, more than the limit of {limits.agents}"
        )
    changed_specs: dict[str, AgentTree] = {}
    for name, rev in target.items():
        if current.get(name) == rev or len(target) > limits.agents:
            continue
        problems, files = agent_dir_problems(repo, name, dirs[name], limits, FILES)
        parsed = agent_tree(dirs[name], files) if not problems else None
        if parsed is not None and parsed.spec is not None:
            chars = len(parsed.spec.description)
            if chars > limits.description_chars:
                problems.append(
                    f"description is {chars} characters, more than the limit of "
                    f"{limits.description_chars}"
                )
        if problems:
            parsed = AgentTree(name, rev, None, "; ".join(problems), {})
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
        errors=tuple(errors + _validate(target, changed_specs, name_problem)),
        fast_forward=ff,
        merge_base=merge_base,
        touched=touched,
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


def merge_commit(
    applied: pygit2.Repository,
    proposed: pygit2.Repository,
    sha: str,
    *,
    base: str,
    approval_id: int,
    approver: str,
) -> str:
    """The commit applied `main` moves to when `sha` (a proposed commit) is approved onto
    `base`: `sha` itself for a fast-forward, else a merge commit recording the approval.
    Written into applied's object database, but no ref points at it yet (`move_main`)."""
    oid = lookup_commit(proposed, sha).id
    copy_objects(proposed, applied, oid)
    head = lookup_commit(applied, base).id
    if head == oid or applied.descendant_of(head, oid):
        raise GitStoreError(f"{sha[:12]} is already applied")
    tree, ff = _merged_tree(applied, head, oid)
    if ff:
        return str(oid)
    message = (
        f"hive: apply approval #{approval_id}\n\n"
        f"Approval: {approval_id}\nApproved-by: {approver}\nProposed-sha: {sha}\n"
    )
    return str(applied.create_commit(None, signature(), signature(), message, tree.id, [head, oid]))


def move_main(applied: pygit2.Repository, old: str, new: str, message: str) -> None:
    """Move applied `main` from `old` ("" when the ref is missing) to the commit `new`:
    a compare-and-swap under an exclusive lock shared by every process that writes it."""
    target = lookup_commit(applied, new).id
    with _RefLock(os.path.join(applied.path, "hive-main.lock")):
        ref = applied.references.get(MAIN)
        current = ref.resolve().target if ref is not None else None
        found = str(current) if isinstance(current, pygit2.Oid) else ""
        if found != old:
            raise RefMovedError(
                f"applied main is at {found[:12] or 'nothing'}, not at {old[:12] or 'nothing'}"
            )
        applied.create_reference_direct(MAIN, target, True, message)
