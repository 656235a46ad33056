"""Approvals: the queue of proposed changes and approve-by-merge / deny.

An approval is bound to one sha. Approving re-plans against applied `main` as it is now
(another approval may have landed since the card was drawn): errors or a conflict fail
the approval with the reason and leave applied `main` untouched. The merge itself is a
compare-and-swap (`gitstore.plan.approve_merge`), serialised here by a lock so two
operators clicking at once get two clean merges, never a lost one.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from controller.bus import Bus
from controller.errors import ConflictError, InvalidError, NotFoundError
from controller.store import Store, now_iso
from gitstore.plan import NameCheck, Plan, approve_merge, compute_plan
from gitstore.repos import GitStore, GitStoreError
from reconcilers.proposals import PendingApproval

__all__ = ["STATUSES", "ApprovalBook"]

STATUSES = ("pending", "approved", "denied", "superseded", "failed")


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    # The claim token is approve's own business; clients see only that it is merging.
    out["merging"] = bool(out.pop("claim"))
    out["plan"] = json.loads(out["plan"])
    out["errors"] = json.loads(out["errors"])
    return out


def _select(db: sqlite3.Connection, approval_id: int) -> dict[str, Any]:
    return _row(db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone())


def _plan_json(plan: Plan) -> str:
    return json.dumps([{"agent": s.agent, "action": s.action.value} for s in plan.steps])


class ApprovalBook:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        git: GitStore,
        on_applied: Callable[[str, str], None],
        name_problem: NameCheck | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.git = git
        self.on_applied = on_applied
        self.name_problem = name_problem
        self._merge_lock = anyio.Lock()

    # --- reading -------------------------------------------------------------------

    async def query(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise InvalidError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")

        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if status is None:
                rows = db.execute("SELECT * FROM approvals ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = db.execute(
                    "SELECT * FROM approvals WHERE status=? ORDER BY id DESC LIMIT ?",
                    (status, limit),
                )
            return [_row(r) for r in rows]

        return await self.store.call(q)

    async def get(self, approval_id: int) -> dict[str, Any]:
        def q(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
            return None if row is None else _row(row)

        found = await self.store.call(q)
        if found is None:
            raise NotFoundError(f"no approval #{approval_id}; `hive approvals` lists them")
        return found

    async def count_pending(self) -> int:
        def q(db: sqlite3.Connection) -> int:
            return int(
                db.execute("SELECT count(*) FROM approvals WHERE status='pending'").fetchone()[0]
            )

        return await self.store.call(q)

    # --- the proposals reconciler's side (reconcilers.proposals.Approvals) ---------

    async def pending(self) -> list[PendingApproval]:
        return [
            PendingApproval(a["id"], a["ref"], a["sha"], a["kind"])
            for a in await self.query("pending")
        ]

    async def known(self, heads: Mapping[str, str]) -> set[tuple[str, str]]:
        def q(db: sqlite3.Connection) -> set[tuple[str, str]]:
            marks = ",".join("?" for _ in heads)
            rows = db.execute(
                f"SELECT ref, sha FROM approvals WHERE sha IN ({marks})", tuple(heads.values())
            )
            return {(r, s) for r, s in rows if heads.get(r) == s}

        return await self.store.call(q)

    async def open(
        self,
        *,
        kind: str,
        ref: str,
        sha: str,
        plan: Plan,
        summary: str,
        author: str,
        note: str = "",
    ) -> int:
        def q(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute(
                "INSERT INTO approvals(kind, ref, sha, base, summary, author, note, status,"
                " plan, errors, created_at) VALUES (?,?,?,?,?,?,?,'pending',?,?,?)",
                (
                    kind,
                    ref,
                    sha,
                    plan.base,
                    summary,
                    author,
                    note,
                    _plan_json(plan),
                    json.dumps(list(plan.errors)),
                    now_iso(),
                ),
            )
            assert cur.lastrowid is not None
            return _select(db, cur.lastrowid)

        approval = await self.store.call(q)
        self.bus.publish("approval.created", approval=approval)
        return int(approval["id"])

    async def _decide(
        self, approval_id: int, status: str, *, claim: str = "", **fields: str
    ) -> dict[str, Any] | None:
        """Move a pending approval to `status` in one compare-and-swap statement; None when
        it was not pending (or someone else holds its claim). `claim` is the token of the
        approve that holds it (an unclaimed approval has the empty claim)."""

        def q(db: sqlite3.Connection) -> dict[str, Any] | None:
            sets = "".join(f", {k}=?" for k in fields)
            cur = db.execute(
                f"UPDATE approvals SET status=?, decided_at=?, claim=''{sets} "
                "WHERE id=? AND status='pending' AND claim=?",
                (status, now_iso(), *fields.values(), approval_id, claim),
            )
            return _select(db, approval_id) if cur.rowcount else None

        approval = await self.store.call(q)
        if approval is not None:
            self.bus.publish(f"approval.{status}", approval=approval)
        return approval

    async def _not_pending(self, approval_id: int) -> ConflictError:
        """The conflict to raise when a decision lost its compare-and-swap."""
        approval = await self.get(approval_id)
        if approval["status"] == "pending":
            return ConflictError(f"approval #{approval_id} is being approved, not pending")
        return ConflictError(f"approval #{approval_id} is {approval['status']}, not pending")

    async def set_note(self, approval_id: int, note: str) -> dict[str, Any]:
        await self.store.call(
            lambda db: db.execute("UPDATE approvals SET note=? WHERE id=?", (note, approval_id))
        )
        approval = await self.get(approval_id)
        self.bus.publish("approval.noted", approval=approval)
        return approval

    async def supersede(self, approval_id: int, reason: str) -> bool:
        return await self._decide(approval_id, "superseded", reason=reason) is not None

    async def recover(self, approval_id: int, applied_sha: str) -> bool:
        recovered = await self._decide(
            approval_id,
            "approved",
            applied_sha=applied_sha,
            approver="recovered",
            reason="found applied at start",
        )
        return recovered is not None

    # --- the operator's side -------------------------------------------------------

    async def _claim(self, approval_id: int) -> tuple[dict[str, Any], str]:
        """Claim a pending approval for approve (one compare-and-swap): while claimed, no
        other decision can land on it, so a deny either wins before the merge starts or
        loses. Returns the approval and the claim token."""
        token = secrets.token_hex(8)

        def q(db: sqlite3.Connection) -> dict[str, Any] | None:
            cur = db.execute(
                "UPDATE approvals SET claim=? WHERE id=? AND status='pending' AND claim=''",
                (token, approval_id),
            )
            return _select(db, approval_id) if cur.rowcount else None

        approval = await self.store.call(q)
        if approval is None:
            raise await self._not_pending(approval_id)
        return approval, token

    async def _release(self, approval_id: int, token: str) -> None:
        await self.store.call(
            lambda db: db.execute(
                "UPDATE approvals SET claim='' WHERE id=? AND claim=?", (approval_id, token)
            )
        )

    async def _settle(
        self, approval_id: int, token: str, status: str, **fields: str
    ) -> dict[str, Any]:
        settled = await self._decide(approval_id, status, claim=token, **fields)
        # Nothing else can decide a claimed approval; losing here is a bug, not a race.
        assert settled is not None, f"approval #{approval_id} lost its claim"
        return settled

    async def approve(self, approval_id: int, approver: str = "operator") -> dict[str, Any]:
        approval, token = await self._claim(approval_id)
        try:
            async with self._merge_lock:
                approval, old = await self._merge(approval, token, approver)
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(approval_id, token)
        self.on_applied(old, approval["applied_sha"])
        return approval

    async def _merge(
        self, approval: dict[str, Any], token: str, approver: str
    ) -> tuple[dict[str, Any], str]:
        approval_id, sha = int(approval["id"]), str(approval["sha"])
        plan = await anyio.to_thread.run_sync(compute_plan, self.git, sha, self.name_problem)
        if plan.errors:
            failed = await self._settle(
                approval_id, token, "failed", reason="; ".join(plan.errors), approver=approver
            )
            raise InvalidError(f"approval #{approval_id} failed: {failed['reason']}")
        # From here the merge and its record must agree: a cancellation waits for both.
        with anyio.CancelScope(shield=True):
            old = await anyio.to_thread.run_sync(self.git.applied_head)
            try:
                new = await anyio.to_thread.run_sync(
                    lambda: approve_merge(
                        self.git,
                        sha,
                        expected_base=plan.base,
                        approval_id=approval_id,
                        approver=approver,
                    )
                )
            except GitStoreError as exc:
                await self._settle(approval_id, token, "failed", reason=str(exc), approver=approver)
                raise ConflictError(f"approval #{approval_id} failed: {exc}") from exc
            approved = await self._settle(
                approval_id,
                token,
                "approved",
                applied_sha=new,
                approver=approver,
                plan=_plan_json(plan),
            )
        return approved, old

    async def deny(
        self, approval_id: int, reason: str = "", approver: str = "operator"
    ) -> dict[str, Any]:
        denied = await self._decide(approval_id, "denied", reason=reason, approver=approver)
        if denied is None:
            raise await self._not_pending(approval_id)
        return denied
