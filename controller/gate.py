"""The enforced gate, hive-c0re's half: its own record of every move of applied `main`.

`applied.git` refuses pushes (`gitstore.hooks`), but a `git update-ref` or a `git fetch`
inside it needs no push. So hive-c0re keeps its own record (`applied_moves` in the
store) and the *recorded* sha, not whatever the ref says, is what runs: agents are
reconciled to it, plans are computed against it, approvals merge onto it.

Every move hive-c0re makes is write-ahead: an intent row (old -> new, why, which
approval), then the ref moves (compare-and-swap), then one transaction marks the intent
done together with the caller's own record (the approval's outcome). A crash leaves an
intent whose `new` is either where applied `main` is (completed at the next start) or
not (dropped): a merge that happened is always recorded, and a move nobody recorded is
never mistaken for ours.

`check()` compares applied `main` with the record: at start, on every resync and when
the applied repo's refs change. An unrecorded move is an alarm (an event, the dashboard's
banner, `status.alarm`) and is never reconciled. The operator resolves it with `reset`
(the ref goes back to the recorded sha, compare-and-swap, recorded) or `adopt` (the found
commit becomes the proposed branch `adopt/<sha>` and the ref goes back: a pending approval
with a plan, approved like any other). All moves and checks hold one lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TypeVar

import anyio

from controller.bus import Bus, EventType
from controller.errors import ConflictError
from controller.store import Store, now_iso
from gitstore.errors import GitStoreError, RefMovedError, UnknownRevError
from gitstore.store import GitStore

__all__ = ["ADOPT_PREFIX", "Alarm", "Gate", "Move", "Mover"]

T = TypeVar("T")
Settle = Callable[[sqlite3.Connection], T]

ADOPT_PREFIX = "refs/heads/adopt/"


@dataclass(frozen=True)
class Alarm:
    """Applied `main` is not where hive-c0re's record says it is."""

    code: str  # "applied_moved" | "applied_missing"
    message: str
    recorded_sha: str
    found_sha: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Move:
    """One recorded move of applied `main` (or an intent, until `done`)."""

    id: int
    old: str
    new: str
    reason: str
    approval_id: int | None
    approver: str
    done: bool
    at: str


def _move(row: sqlite3.Row) -> Move:
    return Move(
        id=row["id"],
        old=row["old"],
        new=row["new"],
        reason=row["reason"],
        approval_id=row["approval_id"],
        approver=row["approver"],
        done=bool(row["done"]),
        at=row["at"],
    )


def _alarm(recorded: str, found: str) -> Alarm:
    if not found:
        return Alarm(
            "applied_missing",
            f"applied main is gone (hive-c0re last moved it to {recorded[:12]}). Agents stay "
            "at the recorded revision; `hive applied reset` puts the ref back.",
            recorded,
            found,
        )
    return Alarm(
        "applied_moved",
        f"applied main is at {found[:12]}, but hive-c0re last moved it to {recorded[:12]}: "
        "it was moved outside hive-c0re (git update-ref, git fetch, a script). Nothing is "
        f"reconciled from it; agents stay at {recorded[:12]}. `hive applied reset` moves it "
        f"back; `hive applied adopt` proposes {found[:12]} as an approval.",
        recorded,
        found,
    )


class Mover:
    """Moves applied `main` while its holder has the gate (see `Gate.moving`)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    @property
    def recorded(self) -> str:
        return self._gate.recorded

    async def approve(
        self,
        sha: str,
        *,
        approval_id: int,
        approver: str,
        settle: Callable[[sqlite3.Connection, str], T],
    ) -> tuple[str, T]:
        """Approve-by-merge the proposed `sha` onto the recorded sha, in one git hop: the
        intent is written from that hop once the merge commit is known, before the ref
        moves. Returns the new sha and `settle(db, new)`, run in the transaction that
        marks the move done. A `GitStoreError` (a conflict, already applied) means
        nothing moved and nothing was recorded."""
        gate = self._gate
        old = gate.recorded
        intents: list[int] = []

        def intend(new: str) -> None:
            reason = f"approval #{approval_id}"
            intents.append(
                gate.store.call_sync(_insert_intent, old, new, reason, approval_id, approver)
            )

        with anyio.CancelScope(shield=True):  # the ref and the record must agree
            try:
                new = await gate.git.approve(
                    sha, base=old, approval_id=approval_id, approver=approver, intend=intend
                )
            except RefMovedError as exc:
                for intent in intents:
                    await gate._drop(intent)
                alarm = await gate._check_locked()
                message = alarm.message if alarm else str(exc)
                raise ConflictError(f"the gate is closed: {message}") from exc
            except BaseException:
                for intent in intents:
                    await gate._drop(intent)
                raise
            result = await gate.store.call_fast(gate._done, intents[0], lambda db: settle(db, new))
            gate.recorded = new
        return new, result


class Gate:
    def __init__(self, store: Store, bus: Bus, git: GitStore) -> None:
        self.store = store
        self.bus = bus
        self.git = git
        self.recorded = ""
        self.alarm: Alarm | None = None
        self._lock = anyio.Lock()

    # --- start-up ----------------------------------------------------------------

    async def open(self, settle: Callable[[sqlite3.Connection, Move], T]) -> list[tuple[Move, T]]:
        """Read the record, finish what a crash interrupted, then check. Intents whose
        ref moved are marked done with `settle(db, move)`; each comes back with its result.
        A state dir from before the gate has no record: its current head is recorded."""
        async with self._lock:
            head = await self._found()
            intents = await self.store.call(
                lambda db: [
                    _move(r) for r in db.execute("SELECT * FROM applied_moves WHERE done=0")
                ]
            )
            settled: list[tuple[Move, T]] = []
            for intent in intents:
                if head == intent.new:
                    result = await self.store.call(
                        self._done, intent.id, lambda db, m=intent: settle(db, m)
                    )
                    settled.append((intent, result))
                else:
                    await self._drop(intent.id)
            recorded = await self.store.call(_recorded)
            if recorded is None and head:
                recorded = head
                await self.store.call(
                    lambda db: db.execute(
                        "INSERT INTO applied_moves(old, new, reason, done, at)"
                        " VALUES ('', ?, 'recorded at first start', 1, ?)",
                        (head, now_iso()),
                    )
                )
            self.recorded = recorded or ""
            if self.recorded:
                await self.git.stand_by(self.recorded)
            await self._check_locked()
            return settled

    # --- checking ------------------------------------------------------------------

    async def check(self) -> Alarm | None:
        """Compare applied `main` with the record; raise or clear the alarm."""
        async with self._lock:
            return await self._check_locked()

    async def _check_locked(self) -> Alarm | None:
        found = await self._found()
        alarm = None if found == self.recorded else _alarm(self.recorded, found)
        if alarm != self.alarm:
            self.alarm = alarm
            self.bus.publish(EventType.APPLIED_ALARM, alarm=alarm.as_json() if alarm else None)
        return alarm

    async def _found(self) -> str:
        try:
            return await self.git.applied_ref()
        except UnknownRevError:
            return ""

    # --- moving --------------------------------------------------------------------

    @asynccontextmanager
    async def moving(self) -> AsyncIterator[Mover]:
        """Hold the gate to move applied `main`; a conflict while it is in alarm. An
        unrecorded move not yet seen is caught by the move's compare-and-swap, which then
        raises the alarm: no check here, so approve pays no extra git read."""
        async with self._lock:
            if self.alarm is not None:
                raise ConflictError(f"the gate is closed: {self.alarm.message}")
            yield Mover(self)

    async def reset(self, approver: str = "operator") -> dict[str, str]:
        """Move applied `main` back to the recorded sha (compare-and-swap, recorded)."""
        async with self._lock:
            alarm = await self._resolvable()
            await self._put_back(alarm, "reset", approver)
            self.bus.publish(
                EventType.APPLIED_RESET, recorded_sha=self.recorded, found_sha=alarm.found_sha
            )
            await self._check_locked()
            return {"recorded_sha": self.recorded, "found_sha": alarm.found_sha}

    async def adopt(self, approver: str = "operator") -> tuple[str, str]:
        """Propose the found commit as the branch `adopt/<sha>` and put applied `main`
        back; returns `(ref, sha)`, which the proposals reconciler makes an approval of."""
        async with self._lock:
            alarm = await self._resolvable()
            found = alarm.found_sha
            if not found:
                raise ConflictError("applied main is gone: there is nothing to adopt; reset it")
            if await self.git.is_ancestor(found, self.recorded):
                raise ConflictError(
                    f"{found[:12]} is already part of the recorded {self.recorded[:12]} "
                    "(applied main was moved back): adopting it would be a rollback; reset"
                )
            ref = f"{ADOPT_PREFIX}{found[:12]}"
            await self.git.adopt_applied(found, ref)
            await self._put_back(alarm, "adopt", approver)
            self.bus.publish(
                EventType.APPLIED_ADOPTED, ref=ref, found_sha=found, recorded_sha=self.recorded
            )
            await self._check_locked()
            return ref, found

    async def _resolvable(self) -> Alarm:
        alarm = await self._check_locked()
        if alarm is None:
            raise ConflictError(
                f"applied main is where hive-c0re recorded it ({self.recorded[:12]}): "
                "there is no alarm to resolve"
            )
        return alarm

    async def _put_back(self, alarm: Alarm, reason: str, approver: str) -> None:
        intent = await self._intend(alarm.found_sha, self.recorded, reason, None, approver)
        with anyio.CancelScope(shield=True):
            try:
                await self.git.move_applied(
                    alarm.found_sha, self.recorded, f"hive: {reason} by {approver}"
                )
            except GitStoreError as exc:
                await self._drop(intent)
                await self._check_locked()
                raise ConflictError(f"{reason} failed: {exc}; check the alarm again") from exc
            await self.store.call(self._done, intent, lambda db: None)

    # --- the record ----------------------------------------------------------------

    async def moves(self, limit: int = 100) -> list[Move]:
        """The recorded moves, newest first."""
        return await self.store.call(
            lambda db: [
                _move(r)
                for r in db.execute(
                    "SELECT * FROM applied_moves WHERE done=1 ORDER BY id DESC LIMIT ?", (limit,)
                )
            ]
        )

    async def _intend(
        self, old: str, new: str, reason: str, approval_id: int | None, approver: str
    ) -> int:
        return await self.store.call_fast(_insert_intent, old, new, reason, approval_id, approver)

    async def _drop(self, intent: int) -> None:
        await self.store.call(
            lambda db: db.execute("DELETE FROM applied_moves WHERE id=? AND done=0", (intent,))
        )

    @staticmethod
    def _done(db: sqlite3.Connection, intent: int, settle: Settle[T]) -> T:
        db.execute("UPDATE applied_moves SET done=1, at=? WHERE id=?", (now_iso(), intent))
        return settle(db)


def _insert_intent(
    db: sqlite3.Connection, old: str, new: str, reason: str, approval_id: int | None, approver: str
) -> int:
    cur = db.execute(
        "INSERT INTO applied_moves(old, new, reason, approval_id, approver, done, at)"
        " VALUES (?,?,?,?,?,0,?)",
        (old, new, reason, approval_id, approver, now_iso()),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _recorded(db: sqlite3.Connection) -> str | None:
    row = db.execute(
        "SELECT new FROM applied_moves WHERE done=1 ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])
