"""Approvals: the queue of proposed changes and approve-by-merge / deny.

An approval is bound to one sha. Every decision is one compare-and-swap statement on
`status='pending'` (`_transition`); approve first *claims* the pending row the same way,
so a deny (or a supersede) racing it either lands before the merge starts (approve then
fails with a conflict and nothing merges) or loses with a conflict naming the status.

Approving holds the gate (`controller.gate`) and re-plans against applied `main` as it
is now: errors or a conflict fail the approval with the reason and leave applied `main`
untouched. The merge is written first, then moved into place by the gate (write-ahead,
compare-and-swap), whose record and the approval's outcome commit in one transaction: a
merge that happened is always recorded as approved. Pending plans are brought up to date
whenever applied `main` moves (`replanned`, driven by the proposals reconciler).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio

from controller.bus import Bus, EventType
from controller.errors import ConflictError, InvalidError, NoSpaceError, NotFoundError
from controller.gate import Gate, Move, Mover
from controller.paging import Page
from controller.store import Store, now_iso
from controller.values import Approval
from gitstore.errors import GitStoreError
from gitstore.errors import NoSpaceError as GitNoSpaceError
from gitstore.plan import Action, NameCheck, Plan, PlanStep
from gitstore.replan import PlannedAt, Replanned
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
        mergeable=bool(row["mergeable"]),
        # The claim token is approve's own business; clients see only that it is merging.
        merging=bool(row["claim"]),
        merge_base=row["merge_base"],
        touched=tuple(json.loads(row["touched"])),
        planned_at=row["planned_at"],
    )


def _select(db: sqlite3.Connection, approval_id: int) -> Approval:
    return _row(db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone())


def _status_where(status: str | None, decided: bool) -> tuple[str, tuple[str, ...]]:
    if decided:
        return "status != 'pending'", ()
    return ("status=?", (status,)) if status is not None else ("1", ())


def _plan_json(plan: Plan) -> str:
    return json.dumps([{"agent": s.agent, "action": s.action.value} for s in plan.steps])


def _plan_columns(plan: Plan) -> tuple[str, str, int, str, str, str]:
    """plan, errors, mergeable, merge_base, touched, planned_at."""
    return (
        _plan_json(plan),
        json.dumps(list(plan.errors)),
        int(plan.mergeable),
        plan.merge_base,
        json.dumps(list(plan.touched)),
        now_iso(),
    )


def _transition(
    db: sqlite3.Connection, approval_id: int, status: str, claim: str, fields: Mapping[str, str]
) -> Approval | None:
    """The one compare-and-swap every decision is: pending (and claimed by `claim`, the
    empty claim for all but approve's own) -> `status`; None when it was not."""
    sets = "".join(f", {k}=?" for k in fields)
    cur = db.execute(
        f"UPDATE approvals SET status=?, decided_at=?, claim=''{sets} "
        "WHERE id=? AND status='pending' AND claim=?",
        (status, now_iso(), *fields.values(), approval_id, claim),
    )
    return _select(db, approval_id) if cur.rowcount else None


class ApprovalBook:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        git: GitStore,
        gate: Gate,
        on_applied: Callable[[str, str], Awaitable[None]],
        name_problem: NameCheck | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.git = git
        self.gate = gate
        self.on_applied = on_applied
        self.name_problem = name_problem

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

    async def count(self, status: str | None = None, *, decided: bool = False) -> int:
        """How many approvals there are of `status` (any with None; every status but
        pending with `decided`)."""

        def q(db: sqlite3.Connection) -> int:
            where, args = _status_where(status, decided)
            sql = f"SELECT count(*) FROM approvals WHERE {where}"
            return int(db.execute(sql, args).fetchone()[0])

        return await self.store.call(q)

    async def newest(
        self, status: str | None, limit: int, offset: int = 0, *, decided: bool = False
    ) -> list[Approval]:
        """One screen of approvals newest first (the dashboard's pages)."""

        def q(db: sqlite3.Connection) -> list[Approval]:
            where, args = _status_where(status, decided)
            rows = db.execute(
                f"SELECT * FROM approvals WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [_row(r) for r in rows]

        return await self.store.call(q)

    async def count_pending(self) -> int:
        def q(db: sqlite3.Connection) -> int:
            return int(
                db.execute("SELECT count(*) FROM approvals WHERE status='pending'").fetchone()[0]
            )

        return await self.store.call(q)

    # --- the proposals reconciler's side (reconcilers.proposals.Approvals) ---------

    async def pending(self) -> list[PendingApproval]:
        def q(db: sqlite3.Connection) -> list[PendingApproval]:
            rows = db.execute(
                "SELECT id, ref, sha, kind, base, merge_base, touched, claim FROM approvals"
                " WHERE status='pending' ORDER BY id"
            )
            return [
                PendingApproval(
                    r["id"],
                    r["ref"],
                    r["sha"],
                    r["kind"],
                    PlannedAt(
                        r["id"],
                        r["sha"],
                        r["base"],
                        r["merge_base"],
                        tuple(json.loads(r["touched"])),
                    ),
                    merging=bool(r["claim"]),
                )
                for r in rows
            ]

        return await self.store.call(q)

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
                " plan, errors, mergeable, merge_base, touched, planned_at, created_at)"
                " VALUES (?,?,?,?,?,?,?,'pending',?,?,?,?,?,?,?)",
                (kind, ref, sha, plan.base, summary, author, note, *_plan_columns(plan), now_iso()),
            )
            assert cur.lastrowid is not None
            return _select(db, cur.lastrowid)

        approval = await self.store.call(q)
        self.bus.publish(EventType.APPROVAL_CREATED, approval=approval)
        return approval.id

    async def replanned(self, results: Sequence[Replanned]) -> None:
        """Store brought-up plans; a changed one is published (`approval.replanned`)."""

        def q(db: sqlite3.Connection) -> list[Approval]:
            changed: list[Approval] = []
            for r in results:
                if r.plan is None:
                    db.execute(
                        "UPDATE approvals SET base=? WHERE id=? AND status='pending' AND claim=''",
                        (r.base, r.id),
                    )
                    continue
                cur = db.execute(
                    "UPDATE approvals SET base=?, plan=?, errors=?, mergeable=?, merge_base=?,"
                    " touched=?, planned_at=? WHERE id=? AND status='pending' AND claim=''",
                    (r.base, *_plan_columns(r.plan), r.id),
                )
                if cur.rowcount:
                    changed.append(_select(db, r.id))
            return changed

        for approval in await self.store.call(q):
            self.bus.publish(EventType.APPROVAL_REPLANNED, approval=approval)

    async def _decide(
        self, approval_id: int, status: str, *, claim: str = "", **fields: str
    ) -> Approval | None:
        """Move a pending approval to `status` in one compare-and-swap statement; None when
        it was not pending (or someone else holds its claim)."""
        approval = await self.store.call(_transition, approval_id, status, claim, fields)
        if approval is not None:
            self.bus.publish(EventType(f"approval.{status}"), approval=approval)
        return approval

    async def _not_pending(self, approval_id: int) -> ConflictError:
        """The conflict to raise when a decision lost its compare-and-swap."""
        approval = await self.get(approval_id)
        if approval.status == "pending":
            return ConflictError(f"approval #{approval_id} is being approved, not pending")
        return ConflictError(f"approval #{approval_id} is {approval.status}, not pending")

    async def set_note(self, approval_id: int, note: str) -> Approval:
        await self.store.call(
            lambda db: db.execute("UPDATE approvals SET note=? WHERE id=?", (note, approval_id))
        )
        approval = await self.get(approval_id)
        self.bus.publish(EventType.APPROVAL_NOTED, approval=approval)
        return approval

    async def supersede(self, approval_id: int, reason: str) -> bool:
        return await self._decide(approval_id, "superseded", reason=reason) is not None

    async def recover(self, approval_id: int, applied_sha: str) -> bool:
        recovered = await self._decide(
            approval_id,
            "approved",
            applied_sha=applied_sha,
            approver="recovered",
            reason="contained in applied main (it landed with another approval)",
        )
        return recovered is not None

    # --- start-up ------------------------------------------------------------------

    def settle_merged(self, db: sqlite3.Connection, move: Move) -> Approval | None:
        """For `Gate.open`: an approval whose merge landed before a crash, recorded as
        approved in the transaction that records the move (its claim died with the crash)."""
        if move.approval_id is None:
            return None
        db.execute(
            "UPDATE approvals SET claim='' WHERE id=? AND status='pending'", (move.approval_id,)
        )
        return _transition(
            db,
            move.approval_id,
            "approved",
            "",
            {
                "applied_sha": move.new,
                "approver": move.approver,
                "reason": "merged before hive-c0re stopped; recorded at the next start",
            },
        )

    async def release_claims(self) -> int:
        """At start: no approve is running, so a claim left by a crash is released."""
        return await self.store.call(
            lambda db: db.execute("UPDATE approvals SET claim='' WHERE claim!=''").rowcount
        )

    # --- the operator's side -------------------------------------------------------

    async def _claim(self, approval_id: int) -> tuple[Approval, str]:
        """Claim a pending approval for approve (one compare-and-swap): while claimed, no
        other decision can land on it, so a deny either wins before the merge starts or
        loses. Returns the approval and the claim token."""
        token = secrets.token_hex(8)

        def q(db: sqlite3.Connection) -> Approval | None:
            cur = db.execute(
                "UPDATE approvals SET claim=? WHERE id=? AND status='pending' AND claim=''",
                (token, approval_id),
            )
            return _select(db, approval_id) if cur.rowcount else None

        approval = await self.store.call_fast(q)
        if approval is None:
            raise await self._not_pending(approval_id)
        return approval, token

    async def _release(self, approval_id: int, token: str) -> None:
        await self.store.call(
            lambda db: db.execute(
                "UPDATE approvals SET claim='' WHERE id=? AND claim=?", (approval_id, token)
            )
        )

    async def _fail(self, approval_id: int, token: str, reason: str, approver: str) -> None:
        failed = await self._decide(
            approval_id, "failed", claim=token, reason=reason, approver=approver
        )
        # Nothing else can decide a claimed approval; losing here is a bug, not a race.
        assert failed is not None, f"approval #{approval_id} lost its claim"

    async def approve(self, approval_id: int, approver: str = "operator") -> Approval:
        approval, token = await self._claim(approval_id)
        decided = False
        try:
            async with self.gate.moving() as mover:
                approved = await self._merge(approval, token, approver, mover)
                decided = True
                return approved
        finally:
            if not decided:  # a decision clears the claim itself; anything else, here
                with anyio.CancelScope(shield=True):
                    await self._release(approval_id, token)

    async def _merge(self, approval: Approval, token: str, approver: str, mover: Mover) -> Approval:
        approval_id, sha = approval.id, approval.sha
        plan = await self.git.plan(sha, self.name_problem)
        if plan.errors:
            reason = "; ".join(plan.errors)
            await self._fail(approval_id, token, reason, approver)
            raise InvalidError(f"approval #{approval_id} failed: {reason}")
        # From here the merge and its record must agree: a cancellation waits for both.
        with anyio.CancelScope(shield=True):

            def settle(db: sqlite3.Connection, new: str) -> Approval:
                fields = {
                    "applied_sha": new,
                    "approver": approver,
                    "plan": _plan_json(plan),
                    "errors": "[]",
                }
                approved = _transition(db, approval_id, "approved", token, fields)
                # Nothing else can decide a claimed approval: losing is a bug, not a race.
                assert approved is not None, f"approval #{approval_id} lost its claim"
                return approved

            try:
                new, approved = await mover.approve(
                    sha, approval_id=approval_id, approver=approver, settle=settle
                )
            except GitNoSpaceError as exc:
                # Not the approval's fault: it stays pending, to be approved once there
                # is space; applied main did not move.
                raise NoSpaceError(str(exc)) from exc
            except GitStoreError as exc:
                await self._fail(approval_id, token, str(exc), approver)
                raise ConflictError(f"approval #{approval_id} failed: {exc}") from exc
            self.bus.publish(EventType.APPROVAL_APPROVED, approval=approved)
            # Still holding the gate, so moves are reported in the order they happened.
            await self.on_applied(plan.base, new)
        return approved

    async def deny(
        self, approval_id: int, reason: str = "", approver: str = "operator"
    ) -> Approval:
        denied = await self._decide(approval_id, "denied", reason=reason, approver=approver)
        if denied is None:
            raise await self._not_pending(approval_id)
        return denied
