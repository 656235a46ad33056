"""The proposals reconciler: proposed branch heads -> pending approvals.

Level-triggered: every run reads all branch heads and all pending approvals and makes
them agree. One pending approval per branch head not contained in applied `main`; a
newer head on the same branch supersedes the older pending approval (an approval is
bound to its sha); a deleted branch supersedes its pending approval; a pending approval
whose sha is already applied (hive-c0re died between merging and recording) is recovered
as approved. Plans are computed in a worker thread (pygit2 is blocking).
"""

from __future__ import annotations

from collections.abc import Mapping
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
        pending = {p.ref: p for p in await self.approvals.pending()}

        def read() -> tuple[dict[str, str], set[str], str]:
            # One worker-thread hop for every git read of the pass.
            heads = self.git.proposed_heads()
            shas = set(heads.values()) | {p.sha for p in pending.values()}
            return heads, {sha for sha in shas if self.git.is_applied(sha)}, self.git.applied_head()

        heads, applied, applied_head = await anyio.to_thread.run_sync(read)
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

    async def open_approval(self, ref: str, sha: str, pending: PendingApproval | None) -> None:
        def read() -> tuple[Plan, str, str]:
            return compute_plan(self.git, sha, self.name_problem), *self._describe(sha)

        plan, summary, author = await anyio.to_thread.run_sync(read)
        if pending is not None:
            await self.approvals.supersede(pending.id, f"{ref} moved to {sha[:12]}")
        await self.approvals.open(
            kind=kind_of(ref), ref=ref, sha=sha, plan=plan, summary=summary, author=author
        )

    def _describe(self, sha: str) -> tuple[str, str]:
        commit = self.git.commit(self.git.proposed, sha)
        summary = commit.message.strip().splitlines()[0] if commit.message.strip() else ""
        return summary, f"{commit.author.name} <{commit.author.email}>"
