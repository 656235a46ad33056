"""`GitStore`: the one owner of the two repositories and of pygit2.

Every public method is async, named for what its caller wants, and makes exactly one
worker-thread hop (`anyio.to_thread.run_sync`) that holds one lock for the whole of its
git work: pygit2 blocks, and its `Repository` objects must not be used by two threads at
once. What comes back is a frozen value (`AgentTree`, `Plan`, `CommitInfo`,
`ApprovalDiff`, str, a fresh dict), never a pygit2 object, and pygit2's own exceptions
leave only as `GitStoreError`. A caller that waits for the lock waits in its worker
thread (or, behind it, on a one-token limiter), so the event loop keeps serving everything
else meanwhile.

The lock covers this process; `approve` and `move_applied` also take an `flock` on
applied `main` so a second process writing it (an operator's script, a test) cannot race
the ref update.

"Applied" here means the sha hive-c0re stands by (`stand_by`, set from its own record of
applied moves by `controller.gate`), not whatever the ref says: reads, plans and the
mirror all use it, so a move made behind hive-c0re's back is never planned against or
reconciled. Only `applied_ref()` reads the ref itself, for the gate to compare.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import anyio
import pygit2

from gitstore import commits, repos
from gitstore.diff import MAX_LINES, ApprovalDiff, approval_diff
from gitstore.errors import GitStoreError, no_space
from gitstore.follow import ProposedState, follow_main
from gitstore.hooks import install_gate_hook
from gitstore.limits import Limits
from gitstore.plan import NameCheck, Plan, compute_plan, merge_commit, move_main
from gitstore.policy import Policy
from gitstore.replan import PlannedAt, Replanned, replan
from gitstore.repos import MAIN, CommitInfo
from gitstore.tree import AgentTree, agent_in, agents_at, policy_at, tree_revs

__all__ = ["GitStore", "clone_repository"]

T = TypeVar("T")


class GitStore:
    """The proposed and applied repositories of one state dir (created when missing)."""

    def __init__(self, state_dir: Path, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self.proposed_path = state_dir / "proposed.git"
        self.applied_path = state_dir / "applied.git"
        # Once, at start-up, before anything serves: the repos must exist to be opened.
        repos.init_repos(self.proposed_path, self.applied_path)
        repos.check_received_objects(self.proposed_path)
        self._proposed = pygit2.Repository(str(self.proposed_path))
        self._applied = pygit2.Repository(str(self.applied_path))
        install_gate_hook(self.applied_path, self.proposed_path)
        self._lock = threading.Lock()
        self._stand_by: str | None = None
        # One hop at a time can make progress anyway; the others wait here, on the loop,
        # in order, instead of each holding a thread of anyio's shared pool (which sqlite
        # calls need too) while it waits for the lock.
        self._limiter = anyio.CapacityLimiter(1)

    async def _hop(self, work: Callable[[], T]) -> T:
        """Run `work` in a worker thread under the lock, with pygit2's errors mapped."""

        def locked() -> T:
            with self._lock:
                try:
                    return work()
                except (pygit2.GitError, OSError) as exc:
                    full = no_space(exc, self.applied_path.parent)
                    if full is not None:
                        raise full from exc
                    if isinstance(exc, pygit2.GitError):
                        raise GitStoreError(str(exc)) from exc
                    raise

        return await anyio.to_thread.run_sync(locked, limiter=self._limiter)

    def _head(self) -> pygit2.Oid:
        """Applied `main` as hive-c0re stands by it (the ref itself until `stand_by`)."""
        if self._stand_by is not None:
            return pygit2.Oid(hex=self._stand_by)
        return repos.ref_target(self._applied, MAIN)

    def _applied_tree(self, sha: str | None) -> pygit2.Tree:
        return repos.lookup_commit(self._applied, sha or str(self._head())).tree

    def _mirror(self) -> None:
        repos.mirror_applied(self._applied, self._proposed, self._head())

    # --- applied main --------------------------------------------------------------

    async def stand_by(self, sha: str) -> None:
        """Make `sha` applied `main` for every read, plan and mirror from now on (it
        names a commit of the applied repo; the gate sets it from its record)."""

        def stand() -> None:
            oid = repos.lookup_commit(self._applied, sha).id
            self._stand_by = str(oid)
            self._mirror()

        await self._hop(stand)

    async def applied_head(self) -> str:
        """Applied `main` as hive-c0re stands by it (see `stand_by`)."""
        return await self._hop(lambda: str(self._head()))

    async def applied_ref(self) -> str:
        """The sha the applied `main` ref points to right now, whoever moved it
        (`UnknownRevError` when the ref is gone): what the gate compares with its record.

        Read from the ref files, off the lock: the gate checks after every move of the
        ref (ours included), and this keeps those checks from queueing behind, or ahead
        of, the reads a reconcile makes right after an approve."""
        return await anyio.to_thread.run_sync(repos.read_ref, self.applied_path, MAIN)

    async def move_applied(self, old: str, new: str, message: str) -> None:
        """Move the applied `main` ref from `old` ("" when missing) to `new`, a commit of
        the applied repo: compare-and-swap (`RefMovedError`); then mirror what hive-c0re
        stands by. Only the gate calls this, between its intent and its record."""

        def move() -> None:
            move_main(self._applied, old, new, message)
            if self._stand_by is not None:
                self._stand_by = new  # hive-c0re moved it: it stands by where it moved it
            self._mirror()

        await self._hop(move)

    async def is_ancestor(self, sha: str, of: str) -> bool:
        """Whether the applied commit `sha` is `of` or one of its ancestors."""
        return await self._hop(
            lambda: repos.is_ancestor_or_self(
                self._applied, repos.lookup_commit(self._applied, of).id, sha
            )
        )

    async def adopt_applied(self, sha: str, ref: str) -> None:
        """Copy the applied commit `sha` into the proposed repo as branch `ref`."""

        def adopt() -> None:
            oid = repos.lookup_commit(self._applied, sha).id
            repos.copy_objects(self._applied, self._proposed, oid)
            existing = self._proposed.references.get(ref)
            if existing is not None and existing.target != oid:
                raise GitStoreError(f"{ref} already exists in the proposed repo")
            self._proposed.create_reference_direct(ref, oid, True, "hive: adopt applied main")

        await self._hop(adopt)

    async def proposed_state(self, shas: Iterable[str] = ()) -> ProposedState:
        """One hop for a proposals pass: proposed `main` follows applied `main` (fast-
        forwarded when behind, `gitstore.follow`), then every branch head is read, then
        which of those heads and `shas` applied `main` contains."""
        wanted = tuple(shas)

        def read() -> ProposedState:
            head = self._head()
            main = follow_main(self._applied, self._proposed, str(head))
            heads = repos.branch_heads(self._proposed)
            applied = repos.contained_in(self._applied, head, (*heads.values(), *wanted))
            return ProposedState(str(head), main, MappingProxyType(heads), applied)

        return await self._hop(read)

    async def applied_revs(self, sha: str | None = None) -> dict[str, str]:
        """`{name: subtree oid}` at applied `main` (or `sha`): cheap, no blob is read."""
        return await self._hop(lambda: tree_revs(self._applied_tree(sha)))

    async def applied_state(self) -> tuple[str, dict[str, str]]:
        """Applied `main` and its `{name: subtree oid}`, read together."""

        def read() -> tuple[str, dict[str, str]]:
            head = str(self._head())
            return head, tree_revs(self._applied_tree(head))

        return await self._hop(read)

    async def applied_agents(self, sha: str | None = None) -> dict[str, AgentTree]:
        """Every agent at applied `main` (or `sha`), parsed."""
        return await self._hop(lambda: agents_at(self._applied_tree(sha)))

    async def applied_agent(self, name: str, sha: str | None = None) -> AgentTree | None:
        """One agent at applied `main` (or `sha`), without reading the others."""
        return await self._hop(lambda: agent_in(self._applied_tree(sha), name))

    async def applied_policy(self, sha: str | None = None) -> tuple[Policy, str | None]:
        """The hive's policy (`hive.toml`) at applied `main` (or `sha`), and why it is
        not valid if it is not (the defaults stand in for it then; a plan refuses such a
        tree, so only a tree that never went through a plan can hold one)."""
        return await self._hop(lambda: policy_at(self._applied_tree(sha)))

    async def is_applied(self, sha: str) -> bool:
        """Whether `sha` is applied `main` or one of its ancestors."""
        return sha in await self.applied_among([sha])

    async def applied_among(self, shas: Iterable[str]) -> frozenset[str]:
        """Those of `shas` that applied `main` contains (itself or an ancestor)."""
        wanted = tuple(shas)

        def read() -> frozenset[str]:
            head = self._head()
            return repos.contained_in(self._applied, head, wanted)

        return await self._hop(read)

    # --- the proposed repo ---------------------------------------------------------

    async def proposed_heads(self) -> dict[str, str]:
        """Every branch of the proposed repo and the commit it points to."""
        return await self._hop(lambda: repos.branch_heads(self._proposed))

    async def resolve_proposed(self, sha: str) -> str:
        """The full sha of a proposed commit named by `sha` or a unique prefix of it."""
        return await self._hop(lambda: str(repos.lookup_commit(self._proposed, sha).id))

    async def describe(self, sha: str) -> CommitInfo:
        """A proposed commit's message, author and parents (applied commits are mirrored
        into the proposed repo, so they are found too)."""
        return await self._hop(lambda: repos.describe(repos.lookup_commit(self._proposed, sha)))

    async def mirror_applied(self) -> None:
        """Copy applied `main` into proposed as `refs/hive/applied`."""
        await self._hop(self._mirror)

    async def commit_files(
        self, branch: str, files: Mapping[str, bytes], message: str, author: tuple[str, str]
    ) -> str:
        """Commit `files` over applied `main` onto proposed `refs/heads/<branch>`."""

        def write() -> str:
            self._mirror()
            return commits.commit_files(self._proposed, branch, files, message, author)

        return await self._hop(write)

    async def commit_rollback(
        self, to: str | None, message: str, author: tuple[str, str]
    ) -> tuple[str, str, str]:
        """A commit on proposed `rollback/<short-sha>` whose tree is the applied commit
        `to`'s (default: the first parent of applied `main`) and whose parent is applied
        `main`; `commits.RollbackError` when `to` is not an earlier commit of it. Returns
        the branch's ref, the new sha and the full sha rolled back to."""

        def write() -> tuple[str, str, str]:
            self._mirror()
            return commits.commit_rollback(
                self._applied, self._proposed, self._head(), to, message, author
            )

        return await self._hop(write)

    async def point_branch(self, branch: str, sha: str) -> None:
        """Make proposed `refs/heads/<branch>` point at an existing proposed commit."""
        await self._hop(lambda: commits.point_branch(self._proposed, branch, sha))

    async def approval_diffs(
        self, pairs: Sequence[tuple[str, str]], max_lines: int = MAX_LINES
    ) -> tuple[ApprovalDiff, ...]:
        """What each `(base, sha)` changes from its merge base, as the dashboard shows it."""
        wanted = tuple(pairs)
        return await self._hop(
            lambda: tuple(approval_diff(self._proposed, b, s, max_lines) for b, s in wanted)
        )

    # --- plans and approve-by-merge ------------------------------------------------

    async def plan(self, sha: str, name_problem: NameCheck | None = None) -> Plan:
        """What merging the proposed `sha` into applied `main` would do, with its errors."""

        def compute() -> Plan:
            self._mirror()
            return compute_plan(self._proposed, sha, name_problem, self._limits)

        return await self._hop(compute)

    async def replan(
        self, planned: Sequence[PlannedAt], name_problem: NameCheck | None = None
    ) -> tuple[Replanned, ...]:
        """Bring pending plans up to applied `main`, recomputing only those it can change
        (`gitstore.replan`)."""
        wanted = tuple(planned)

        def compute() -> tuple[Replanned, ...]:
            self._mirror()
            return replan(self._proposed, wanted, name_problem, self._limits)

        return await self._hop(compute)

    async def approve(
        self,
        sha: str,
        *,
        base: str,
        approval_id: int,
        approver: str,
        intend: Callable[[str], None],
    ) -> str:
        """Approve-by-merge in one hop: the merge commit of the proposed `sha` onto
        applied `base`, then `intend(new)` (the caller's write-ahead record, run in this
        worker thread), then the compare-and-swap move of applied `main` from `base` to
        it (`RefMovedError`). Returns the new applied sha."""

        def approve() -> str:
            new = merge_commit(
                self._applied,
                self._proposed,
                sha,
                base=base,
                approval_id=approval_id,
                approver=approver,
            )
            intend(new)
            move_main(self._applied, base, new, f"hive: approval #{approval_id} by {approver}")
            if self._stand_by is not None:
                self._stand_by = new
            self._mirror()
            return new

        return await self._hop(approve)


async def clone_repository(source: Path, dest: Path) -> None:
    """A working clone of `source` at `dest` (the manager's checkout of proposed).

    Opens its own repository objects, so it needs no lock and does not wait for one."""

    def clone() -> None:
        try:
            pygit2.clone_repository(str(source), str(dest))
        except (pygit2.GitError, ValueError) as exc:
            raise GitStoreError(f"cannot clone {source} into {dest}: {exc}") from exc

    await anyio.to_thread.run_sync(clone)
