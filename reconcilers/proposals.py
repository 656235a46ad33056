"""The proposals reconciler: proposed branch heads -> pending approvals.

Level-triggered: every run reads all branch heads and all pending approvals and makes
them agree, in three steps. `reconcile_main`: proposed `main` follows applied `main`
(`gitstore.follow`). `reconcile_heads`: one pending approval per branch head not
contained in applied `main`; a newer head on the same branch supersedes the older pending
approval (an approval is bound to its sha); a deleted branch supersedes its pending
approval; a pending approval whose sha applied `main` now contains (it landed with
another approval) is recovered as approved. `reconcile_plans`: every pending plan made
against an older applied `main` is brought up to date, recomputed only where the move
can change it (`gitstore.replan`). Every git read is a `GitStore` call (a worker-thread
hop each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gitstore.errors import GitStoreError
from gitstore.follow import ProposedMain, ProposedState
from gitstore.plan import NameCheck, Plan, unplannable
from gitstore.replan import PlannedAt, Replanned
from gitstore.store import GitStore

__all__ = ["Approvals", "PendingApproval", "ProposalsReconciler", "kind_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingApproval:
    id: int
    ref: str
    sha: str
    kind: str
    planned: PlannedAt  # what its plan was computed against
    merging: bool = False  # an approve holds it: its plan is being used right now


class Approvals(Protocol):
    async def pending(self) -> list[PendingApproval]: ...

    async def known(self, heads: Mapping[str, str]) -> set[tuple[str, str]]:
        """Which of these `{ref: sha}` branch heads already have an approval (any status)."""
        ...

    async def open(
        self, *, kind: str, ref: str, sha: str, plan: Plan, summary: str, author: str
    ) -> int: ...

    async def supersede(self, approval_id: int, reason: str) -> bool:
        """Compare-and-swap pending -> superseded; False when another decision won."""
        ...

    async def recover(self, approval_id: int, applied_sha: str) -> bool:
        """Compare-and-swap pending -> approved (found applied); False when it lost."""
        ...

    async def replanned(self, results: Sequence[Replanned]) -> None:
        """Store plans brought up to applied `main`."""
        ...


def kind_of(ref: str) -> str:
    if ref.startswith("refs/heads/spawn/"):
        return "spawn"
    if ref.startswith("refs/heads/rollback/"):
        return "rollback"
    return "apply_commit"


class ProposalsReconciler:
    def __init__(
        self,
        git: GitStore,
        approvals: Approvals,
        name_problem: NameCheck | None = None,
        on_main: Callable[[ProposedMain], None] = lambda main: None,
    ) -> None:
        self.git = git
        self.approvals = approvals
        self.name_problem = name_problem
        self.on_main = on_main

    async def reconcile(self) -> None:
        pending = {p.ref: p for p in await self.approvals.pending()}
        # One worker-thread hop for every git read of the pass (main followed first).
        state = await self.git.proposed_state(p.sha for p in pending.values())
        self.reconcile_main(state)
        await self.reconcile_heads(pending, state)
        await self.reconcile_plans(pending, state)

    def reconcile_main(self, state: ProposedState) -> None:
        """Proposed `main` follows applied `main` (fast-forwarded in the read); report
        how it stands."""
        self.on_main(state.main)

    async def reconcile_heads(
        self, pending: Mapping[str, PendingApproval], state: ProposedState
    ) -> None:
        """Branch heads and pending approvals agree: recover, supersede, open."""
        heads, applied = state.heads, state.applied
        recovering = any(p.sha in applied for p in pending.values())
        applied_head = await self.git.applied_head() if recovering else ""
        for approval in pending.values():
            if approval.sha in applied:
                await self.approvals.recover(approval.id, applied_head)
            elif approval.ref not in heads and approval.ref.startswith("refs/heads/"):
                await self.approvals.supersede(approval.id, "the branch was deleted")
        fresh = {
            ref: sha
            for ref, sha in heads.items()
            if sha not in applied and not (ref in pending and pending[ref].sha == sha)
        }
        if not fresh:
            return
        known = await self.approvals.known(fresh)
        for ref, sha in sorted(fresh.items()):
            if (ref, sha) not in known:
                await self.open_approval(ref, sha, pending.get(ref))

    async def reconcile_plans(
        self, pending: Mapping[str, PendingApproval], state: ProposedState
    ) -> None:
        """Pending plans are true against applied `main` as it is now."""
        stale = [
            p.planned
            for p in pending.values()
            if p.planned.base != state.head and not p.merging and p.sha not in state.applied
        ]
        if stale:
            await self.approvals.replanned(await self.git.replan(stale, self.name_problem))

    async def open_approval(self, ref: str, sha: str, pending: PendingApproval | None) -> None:
        # Whatever one branch holds is that branch's approval's error: a branch that
        # cannot be read or planned still gets an approval (unmergeable, the reason on
        # its card), and every branch after it is still seen.
        try:
            plan = await self.git.plan(sha, self.name_problem)
        except Exception as exc:  # a defect planning one branch must not stall the rest
            log.exception("could not plan %s at %s", ref, sha[:12])
            plan = unplannable(sha, f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            commit = await self.git.describe(sha)
            summary, author = commit.summary, commit.author
        except GitStoreError as exc:
            log.warning("could not read %s at %s: %s", ref, sha[:12], exc)
            summary, author = "(unreadable commit)", ""
        if pending is not None:
            await self.approvals.supersede(pending.id, f"{ref} moved to {sha[:12]}")
        await self.approvals.open(
            kind=kind_of(ref),
            ref=ref,
            sha=sha,
            plan=plan,
            summary=summary,
            author=author,
        )
