"""Approvals: the queue of proposed changes and approve-by-merge / deny.

An approval is bound to one sha. Approving re-plans against applied `main` as it is now
(another approval may have landed since the card was drawn): errors or a conflict fail
the approval with the reason and leave applied `main` untouched. The merge itself is a
compare-and-swap (`GitStore.approve`), serialised here by a lock so two
operators clicking at once get two clean merges, never a lost one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping

import anyio

from controller.bus import Bus, EventType
from controller.errors import ConflictError, InvalidError, NoSpaceError, NotFoundError
from controller.paging import Page
from controller.store import Store, now_iso
from controller.values import Approval
from gitstore.errors import GitStoreError
from gitstore.errors import NoSpaceError as GitNoSpaceError
from gitstore.plan import Action, NameCheck, Plan, PlanStep
from gitstore.store import GitStore
from reconcilers.proposals import PendingApproval

__all__ = ["STATUSES", "ApprovalBook"]

STATUSES = ("pending", "approved", "denied", "superseded", "failed")


def _row(row: sqlite3.Row) -> Approval:
    return Approval(
        id=row["id"],
        kind=row["kind"],
        ref=row["ref"],
        sha=row["sha"],
        base=row["base"],
        summary=row["summary"],
        author=row["author"],
        note=row["note"],
        status=row["status"],
        plan=tuple(PlanStep(s["agent"], Action(s["action"])) for s in json.loads(row["plan"])),
        errors=tuple(json.loads(row["errors"])),
        reason=row["reason"],
        approver=row["approver"],
        applied_sha=row["applied_sha"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
    )


def _select(db: sqlite3.Connection, approval_id: int) -> Approval:
    return _row(db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone())


def _plan_json(plan: Plan) -> str:
    return json.dumps([{"agent": s.agent, "action": s.action.value} for s in plan.steps])


class ApprovalBook:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        git: GitStore,
        on_applied: Callable[[str, str], Awaitable[None]],
        name_problem: NameCheck | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.git = git
        self.on_applied = on_applied
        self.name_problem = name_problem
        self._merge_lock = anyio.Lock()

    # --- reading -------------------------------------------------------------------

    async def query(
        self, status: str | None = None, limit: int = 1000, page: Page | None = None
    ) -> list[Approval]:
        """Approvals newest first; with a `page` (a client's list), one page of them."""
        if status is not None and status not in STATUSES:
            raise InvalidError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        where, params = page.where() if page is not None else ("1", ())
        limit = page.limit if page is not None else limit

        def q(db: sqlite3.Connection) -> list[Approval]:
            if status is None:
                rows = db.execute(
                    f"SELECT * FROM approvals WHERE {where} ORDER BY id DESC LIMIT ?",
                    (*params, limit),
                )
            else:
                rows = db.execute(
                    f"SELECT * FROM approvals WHERE status=? AND {where} ORDER BY id DESC LIMIT ?",
                    (status, *params, limit),
                )
            found = (_row(r) for r in rows)
            return page.take(found) if page is not None else list(found)

        return await self.store.call(q)

    async def get(self, approval_id: int) -> Approval:
        def q(db: sqlite3.Connection) -> Approval | None:
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
        return [PendingApproval(a.id, a.ref, a.sha, a.kind) for a in await self.query("pending")]

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
        def q(db: sqlite3.Connection) -> Approval:
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
        self.bus.publish(EventType.APPROVAL_CREATED, approval=approval)
        return approval.id

    async def _decide(self, approval_id: int, status: str, **fields: str) -> Approval:
        def q(db: sqlite3.Connection) -> Approval:
            sets = ", ".join(f"{k}=?" for k in fields)
            db.execute(
                f"UPDATE approvals SET status=?, decided_at=?{', ' + sets if sets else ''} "
                "WHERE id=?",
                (status, now_iso(), *fields.values(), approval_id),
            )
            return _select(db, approval_id)

        approval = await self.store.call(q)
        self.bus.publish(EventType(f"approval.{status}"), approval=approval)
        return approval

    async def set_note(self, approval_id: int, note: str) -> Approval:
        await self.store.call(
            lambda db: db.execute("UPDATE approvals SET note=? WHERE id=?", (note, approval_id))
        )
        approval = await self.get(approval_id)
        self.bus.publish(EventType.APPROVAL_NOTED, approval=approval)
        return approval

    async def supersede(self, approval_id: int, reason: str) -> None:
        await self._decide(approval_id, "superseded", reason=reason)

    async def recover(self, approval_id: int, applied_sha: str) -> None:
        await self._decide(
            approval_id,
            "approved",
            applied_sha=applied_sha,
            approver="recovered",
            reason="found applied at start",
        )

    # --- the operator's side -------------------------------------------------------

    async def _pending_one(self, approval_id: int) -> Approval:
        approval = await self.get(approval_id)
        if approval.status != "pending":
            raise ConflictError(f"approval #{approval_id} is {approval.status}, not pending")
        return approval

    async def approve(self, approval_id: int, approver: str = "operator") -> Approval:
        async with self._merge_lock:
            approval = await self._pending_one(approval_id)
            sha = approval.sha
            plan = await self.git.plan(sha, self.name_problem)
            if plan.errors:
                failed = await self._decide(
                    approval_id, "failed", reason="; ".join(plan.errors), approver=approver
                )
                raise InvalidError(f"approval #{approval_id} failed: {failed.reason}")
            try:
                # The compare-and-swap on plan.base makes it the head we moved from.
                new = await self.git.approve(
                    sha, expected_base=plan.base, approval_id=approval_id, approver=approver
                )
            except GitNoSpaceError as exc:
                # Not the approval's fault: it stays pending, to be approved once there
                # is space; applied main did not move.
                raise NoSpaceError(str(exc)) from exc
            except GitStoreError as exc:
                await self._decide(approval_id, "failed", reason=str(exc), approver=approver)
                raise ConflictError(f"approval #{approval_id} failed: {exc}") from exc
            approval = await self._decide(
                approval_id, "approved", applied_sha=new, approver=approver, plan=_plan_json(plan)
            )
            # Still under the merge lock, so moves are reported in the order they happened.
            await self.on_applied(plan.base, new)
        return approval

    async def deny(
        self, approval_id: int, reason: str = "", approver: str = "operator"
    ) -> Approval:
        await self._pending_one(approval_id)
        return await self._decide(approval_id, "denied", reason=reason, approver=approver)
