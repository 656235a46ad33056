"""The proposals reconciler: proposed branch heads -> pending approvals.

Level-triggered: every run reads all branch heads and all pending approvals and makes
them agree. One pending approval per branch head not contained in applied `main`; a
newer head on the same branch supersedes the older pending approval (an approval is
bound to its sha); a deleted branch supersedes its pending approval; a pending approval
whose sha is already applied (hive-c0re died between merging and recording) is recovered
as approved. Plans are computed in a worker thread (pygit2 is blocking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anyio

from gitstore.plan import NameCheck, Plan, compute_plan
from gitstore.repos import GitStore

__all__ = ["Approvals", "PendingApproval", "ProposalsReconciler", "kind_of"]


@dataclass(frozen=True)
class PendingApproval:
    id: int
    ref: str
    sha: str
    kind: str


class Approvals(Protocol):
    async def pending(self) -> list[PendingApproval]: ...

    async def known(self, ref: str, sha: str) -> bool:
        """Whether an approval (any status) exists for this exact branch head."""
        ...

    async def open(
        self, *, kind: str, ref: str, sha: str, plan: Plan, summary: str, author: str
    ) -> int: ...

    async def supersede(self, approval_id: int, reason: str) -> None: ...

    async def recover(self, approval_id: int, applied_sha: str) -> None: ...


def kind_of(ref: str) -> str:
    return "spawn" if ref.startswith("refs/heads/spawn/") else "apply_commit"


class ProposalsReconciler:
    def __init__(
        self, git: GitStore, approvals: Approvals, name_problem: NameCheck | None = None
    ) -> None:
        self.git = git
        self.approvals = approvals
        self.name_problem = name_problem

    async def reconcile(self) -> None:
        heads = await anyio.to_thread.run_sync(self.git.proposed_heads)
        pending = {p.ref: p for p in await self.approvals.pending()}
        for approval in pending.values():
            if await anyio.to_thread.run_sync(self.git.is_applied, approval.sha):
                await self.approvals.recover(
                    approval.id, await anyio.to_thread.run_sync(self.git.applied_head)
                )
            elif approval.ref not in heads and approval.ref.startswith("refs/heads/"):
                await self.approvals.supersede(approval.id, "the branch was deleted")
        for ref, sha in sorted(heads.items()):
            await self.reconcile_head(ref, sha, pending.get(ref))

    async def reconcile_head(self, ref: str, sha: str, pending: PendingApproval | None) -> None:
        if pending is not None and pending.sha == sha:
            return
        if await anyio.to_thread.run_sync(self.git.is_applied, sha):
            return
        if await self.approvals.known(ref, sha):
            return
        plan = await anyio.to_thread.run_sync(compute_plan, self.git, sha, self.name_problem)
        summary, author = await anyio.to_thread.run_sync(self._describe, sha)
        if pending is not None:
            await self.approvals.supersede(pending.id, f"{ref} moved to {sha[:12]}")
        await self.approvals.open(
            kind=kind_of(ref), ref=ref, sha=sha, plan=plan, summary=summary, author=author
        )

    def _describe(self, sha: str) -> tuple[str, str]:
        commit = self.git.commit(self.git.proposed, sha)
        summary = commit.message.strip().splitlines()[0] if commit.message.strip() else ""
        return summary, f"{commit.author.name} <{commit.author.email}>"
