"""The durable message broker between agents (and the operator).

Messages live in sqlite. Delivery has two modes:
- *leased* (`recv(lease=True)`, the harness's wake): the message is delivered but stays
  unacknowledged until `ack`; `release` makes it deliverable again, so a turn that dies
  loses nothing;
- *acknowledged at once* (`lease=False`, the `recv` tool inside a turn).

A lease outlives its connection, and hive-c0re: when the harness's connection closes, or
at the broker's start, its leases become *orphans* (`lease = 0`), delivered to nobody.
A harness that reconnects mid-turn takes its wake message back with `reclaim` and then
settles it, so a daemon crash mid-turn does not run the turn twice. Orphans nobody takes
back go to the agent's next leased `recv` (only one harness runs per agent, and its turn
loop reclaims before it receives, so a leased `recv` with orphans left over means their
turn died), or at once to a leased `recv` already waiting when the lease is orphaned.

Sends are group-committed: concurrent sends queue up and one writer commits them in a
single transaction, each sender answered after its commit. A `recv` that finds nothing
registers a waiter *inside the same store lock* the writer takes, so a message is either
seen by the check or handed to the waiter in the very transaction that inserts it (one
commit on the hot path, no polling, no lost wake-up). A waiter that gives up after it was
handed a message waits for that hand-off and then returns the message to the queue.

Quotas (`controller/quotas.py`) are checked where the message would be stored: the body
size and the sender's rate before it is queued, the recipient's inbox inside the
writer's transaction, against an upper bound kept in memory and read exactly (a partial
index holds only the unacknowledged rows and their sizes) only when the bound says the
inbox might be full: one inbox query per many sends, exact when it matters. A send may
carry an `idempotency_key`: a retry with the same key from the same sender answers the
first message's id and stores nothing; keys are kept as long as their message (for
ever: the broker prunes nothing), by a unique index on `(sender, idempotency_key)`.
Lists are pages (`controller/paging.py`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio

from controller.bus import Bus, EventType
from controller.errors import ConflictError, HiveError, NotFoundError
from controller.paging import DEFAULT_BUDGET, Page
from controller.quotas import BrokerLimits, CountRate, SendRate, check_body, inbox_full
from controller.store import Store, now_iso
from controller.values import Message
from reconcilers.clock import Clock, SystemClock

__all__ = ["MAX_WAIT", "OPERATOR", "Broker"]

log = logging.getLogger(__name__)

MAX_WAIT = 180.0
OPERATOR = "operator"

_COLUMNS = "id, sender, recipient, kind, body, created_at, delivered_at, acked_at"
# The lease of a delivered message whose holder is gone (owners count from 1).
_ORPHAN = 0
# What a row costs a page beyond its body: its other fields as JSON.
_ROW_BYTES = 200


def _message(row: sqlite3.Row | tuple[Any, ...]) -> Message:
    """A message from its `_COLUMNS`, in that order."""
    return Message(*tuple(row))


@dataclass(eq=False)
class _Waiter:
    recipient: str
    owner: int | None
    done: anyio.Event = field(default_factory=anyio.Event)
    message: Message | None = None
    claimed: bool = False


@dataclass(eq=False)
class _Outgoing:
    sender: str
    recipient: str
    kind: str
    body: str
    size: int
    key: str | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    message: Message | None = None
    waiter: _Waiter | None = None
    failure: HiveError | None = None  # why it was not stored, when the sender may act
    repeated: bool = False  # the key's message was stored before: `message` is that one


@dataclass
class Tally:
    """What the broker did since start, as plain counters (read by `/metrics`)."""

    sent: int = 0
    delivered: int = 0
    redelivered: int = 0  # given back unacknowledged, to be delivered again


class Broker:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        limits: BrokerLimits | None = None,
        clock: Clock | None = None,
        page_bytes: int = DEFAULT_BUDGET,
    ) -> None:
        self.store = store
        self.bus = bus
        self.limits = limits or BrokerLimits()
        # recipient -> (messages, bytes) at least as many as its inbox holds unacknowledged
        self._held: dict[str, tuple[int, int]] = {}
        self.page_bytes = page_bytes
        self._rate = SendRate(self.limits, clock or SystemClock())
        self._sends = CountRate("send", "minute", clock or SystemClock())
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._waiters_lock = threading.Lock()
        self._owners = itertools.count(_ORPHAN + 1)
        # Recipients that may have orphaned leases (read and changed under the store lock).
        self._orphans: set[str] = set()
        # Sends queue here for the writer; a plain deque and one event are the cheapest
        # hand-off (a memory stream costs a checkpoint per item on each side).
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = anyio.Event()
        self._serving = False
        self.tally = Tally()

    def new_owner(self) -> int:
        """A lease owner token: one per connection."""
        return next(self._owners)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # No connection outlives the daemon, but a harness mid-turn may: it reclaims.
        orphans = await self.store.call(
            lambda db: db.execute(
                f"UPDATE messages SET lease={_ORPHAN} WHERE acked_at IS NULL "
                "AND delivered_at IS NOT NULL RETURNING recipient"
            ).fetchall()
        )
        self._orphans.update(row[0] for row in orphans)
        self._serving = True
        task_status.started()
        try:
            await self._write_outbox()
        finally:
            self._serving = False
            for out in self._outbox:
                out.done.set()  # their senders see no message and report the shutdown
            self._outbox.clear()

    async def _write_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            # One turn of the loop lets sends that arrived together join this commit.
            await anyio.lowlevel.checkpoint()
            self._outbox_ready = anyio.Event()
            batch = [self._outbox.popleft() for _ in range(min(500, len(self._outbox)))]
            if self._outbox:
                self._outbox_ready.set()
            if not batch:
                continue
            try:
                await self.store.call_fast(self._insert_batch, batch)
            except Exception as exc:
                # Nothing of the batch was stored (the transaction rolled back): its
                # senders get an error instead of an id, and the broker carries on.
                if isinstance(exc, HiveError):  # e.g. the disk is full: say so
                    log.warning("storing %d message(s) failed: %s", len(batch), exc)
                else:
                    log.exception("storing %d message(s) failed", len(batch))
                for out in batch:
                    out.message = None
                    out.failure = exc if isinstance(exc, HiveError) else None
                    if out.waiter is not None:
                        self._requeue_waiter(out.waiter)
                    out.done.set()
                continue
            for out in batch:
                if out.failure is not None or out.repeated:
                    out.done.set()
                    continue
                assert out.message is not None
                if out.waiter is not None:
                    self.tally.delivered += 1  # handed straight to a waiting recv
                    out.waiter.message = out.message
                    out.waiter.done.set()
                out.done.set()
                self.tally.sent += 1
                self.bus.publish(EventType.MESSAGE_SENT, message=_public(out.message))

    # --- sending -------------------------------------------------------------------

    async def send(
        self,
        sender: str,
        recipient: str,
        body: str,
        kind: str = "message",
        idempotency_key: str | None = None,
        per_minute: int | None = None,
    ) -> Message:
        """Store a message; `per_minute` is the sender's counted rate (`hive.toml`'s
        `rate.send_per_minute`), the operator's sends have none."""
        size = check_body(body, self.limits)
        if not self._serving:
            raise ConflictError("the broker is not running")
        if sender != OPERATOR:
            if per_minute is not None:
                self._sends.spend(sender, per_minute)
            self._rate.spend(sender, size)
        out = _Outgoing(sender, recipient, kind, body, size, idempotency_key)
        self._outbox.append(out)
        self._outbox_ready.set()
        await out.done.wait()
        if out.failure is not None:
            raise type(out.failure)(out.failure.message)
        if out.message is None:
            raise ConflictError("the broker stopped before the message was stored")
        return out.message

    def _insert_batch(self, db: sqlite3.Connection, batch: list[_Outgoing]) -> None:
        now = now_iso()
        for out in batch:
            if out.key is not None and self._repeat(db, out):
                continue
            # The operator never acknowledges: see quotas.
            if out.recipient != OPERATOR and not self._inbox_takes(db, out):
                continue
            waiter = self._pop_waiter(out.recipient)
            delivered = now if waiter is not None else None
            acked = now if waiter is not None and waiter.owner is None else None
            if acked is None and out.recipient != OPERATOR:
                held, held_bytes = self._held[out.recipient]
                self._held[out.recipient] = (held + 1, held_bytes + out.size)
            row = (out.sender, out.recipient, out.kind, out.body, now, delivered, acked)
            cur = db.execute(
                "INSERT INTO messages(sender, recipient, kind, body, created_at, delivered_at,"
                " acked_at, lease, size, idempotency_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (*row, waiter.owner if waiter is not None else None, out.size, out.key),
            )
            out.message = _message((cur.lastrowid, *row))
            out.waiter = waiter

    def _inbox_takes(self, db: sqlite3.Connection, out: _Outgoing) -> bool:
        """Whether the recipient's inbox has room for `out` (else `out.failure` says why).

        `_held` bounds each inbox from above: exact when read, then raised by every
        message stored and never lowered (acks only make it looser), so the count is
        read again only when the bound says the inbox might be full."""
        bound = self._held.get(out.recipient)
        if bound is None or inbox_full(out.recipient, *bound, out.size, self.limits):
            row = db.execute(
                "SELECT count(*), total(size) FROM messages WHERE recipient=? AND acked_at IS NULL",
                (out.recipient,),
            ).fetchone()
            bound = self._held[out.recipient] = (int(row[0]), int(row[1]))
            out.failure = inbox_full(out.recipient, *bound, out.size, self.limits)
        return out.failure is None

    def _repeat(self, db: sqlite3.Connection, out: _Outgoing) -> bool:
        """Whether `out` repeats a message stored before under its key (then `out`
        answers with that message, or fails if the key was used for another)."""
        row = db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE sender=? AND idempotency_key=?",
            (out.sender, out.key),
        ).fetchone()
        if row is None:
            return False
        if (row["recipient"], row["body"], row["kind"]) != (out.recipient, out.body, out.kind):
            out.failure = ConflictError(
                f"idempotency key {out.key!r} was used for message #{row['id']} to "
                f"{row['recipient']} with another body; a new message needs a new key"
            )
        else:
            out.message, out.repeated = _message(row), True
        return True

    def _requeue_waiter(self, waiter: _Waiter) -> None:
        """Give back a waiter claimed for a message that was not stored after all."""
        with self._waiters_lock:
            waiter.claimed = False
            self._waiters.setdefault(waiter.recipient, deque()).appendleft(waiter)

    def _pop_waiter(self, recipient: str) -> _Waiter | None:
        with self._waiters_lock:
            queue = self._waiters.get(recipient)
            if not queue:
                return None
            waiter = queue.popleft()
            waiter.claimed = True
            return waiter

    # --- receiving -----------------------------------------------------------------

    async def recv(self, recipient: str, wait: float, owner: int | None) -> Message | None:
        """The oldest deliverable message, waiting up to `wait` seconds for one.

        With an `owner` the message is leased to it; without, it is acknowledged."""
        waiter = _Waiter(recipient, owner)
        found = await self.store.call_fast(self._claim_or_wait, waiter, wait > 0)
        if found is not None:
            return found
        if wait <= 0:
            return None
        try:
            with anyio.move_on_after(min(wait, MAX_WAIT)):
                await waiter.done.wait()
        except BaseException:
            # Cancelled (the connection went): a message handed to us goes back.
            with anyio.CancelScope(shield=True):
                if not self._forget(waiter):
                    await waiter.done.wait()
                    assert waiter.message is not None
                    await self._give_back(waiter.message)
            raise
        if not waiter.done.is_set() and not self._forget(waiter):
            # Timed out in the same instant a sender handed us a message: take it.
            await waiter.done.wait()
        return waiter.message

    def _claim_or_wait(
        self, db: sqlite3.Connection, waiter: _Waiter, register: bool
    ) -> Message | None:
        if waiter.owner is not None and waiter.recipient in self._orphans:
            self._free_orphans(db, waiter.recipient)
        message = self._claim(db, waiter)
        if message is None and register:
            with self._waiters_lock:
                self._waiters.setdefault(waiter.recipient, deque()).append(waiter)
        return message

    def _claim(self, db: sqlite3.Connection, waiter: _Waiter) -> Message | None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE recipient=? AND delivered_at IS NULL "
            "ORDER BY id LIMIT 1",
            (waiter.recipient,),
        ).fetchone()
        if row is None:
            return None
        now = now_iso()
        acked = now if waiter.owner is None else None
        db.execute(
            "UPDATE messages SET delivered_at=?, acked_at=?, lease=? WHERE id=?",
            (now, acked, waiter.owner, row["id"]),
        )
        self.tally.delivered += 1
        return dataclasses.replace(_message(row), delivered_at=now, acked_at=acked)

    def _forget(self, waiter: _Waiter) -> bool:
        """Remove a waiter that gave up; False if a sender already claimed it."""
        with self._waiters_lock:
            if waiter.claimed:
                return False
            queue = self._waiters.get(waiter.recipient)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
            return True

    async def ack(self, recipient: str, message_id: int, owner: int) -> None:
        await self._settle(recipient, message_id, owner, "acked_at=?", now_iso())
        self.bus.publish(EventType.MESSAGE_ACKED, id=message_id, recipient=recipient)

    async def release(self, recipient: str, message_id: int, owner: int) -> None:
        await self._settle(recipient, message_id, owner, "delivered_at=NULL, lease=NULL", None)
        self.tally.redelivered += 1
        await self._rehand(recipient)

    async def _rehand(self, recipient: str) -> None:
        """A message became deliverable again: hand it to a waiting receiver, if any."""

        def q(db: sqlite3.Connection) -> _Waiter | None:
            waiter = self._pop_waiter(recipient)
            if waiter is None:
                return None
            waiter.message = self._claim(db, waiter)
            if waiter.message is None:
                self._requeue_waiter(waiter)
                return None
            return waiter

        waiter = await self.store.call(q)
        if waiter is not None:
            waiter.done.set()

    async def _settle(
        self, recipient: str, message_id: int, owner: int, sets: str, value: str | None
    ) -> None:
        def q(db: sqlite3.Connection) -> int:
            args: tuple[Any, ...] = (value,) if value is not None else ()
            return db.execute(
                f"UPDATE messages SET {sets} WHERE id=? AND recipient=? AND lease=? "
                "AND acked_at IS NULL",
                (*args, message_id, recipient, owner),
            ).rowcount

        if await self.store.call_fast(q) == 0:
            raise NotFoundError(f"message {message_id} is not leased to this connection")

    async def _give_back(self, message: Message) -> None:
        def q(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET delivered_at=NULL, acked_at=NULL, lease=NULL WHERE id=?",
                (message.id,),
            )
            # Unacknowledged again: the inbox's bound no longer holds (under the store's
            # lock, like every use of it).
            self._held.pop(message.recipient, None)

        await self.store.call(q)
        self.tally.redelivered += 1
        await self._rehand(message.recipient)

    async def orphan_owner(self, owner: int) -> int:
        """`owner`'s connection closed: its leases become orphans, to be reclaimed by
        its harness when it reconnects. A leased receiver already waiting for the same
        recipient shows that no turn holds them: they go to it at once."""

        def q(db: sqlite3.Connection) -> tuple[int, set[str]]:
            rows = db.execute(
                f"UPDATE messages SET lease={_ORPHAN} "
                "WHERE lease=? AND acked_at IS NULL RETURNING recipient",
                (owner,),
            ).fetchall()
            recipients = {r[0] for r in rows}
            self._orphans.update(recipients)
            waiting = {r for r in recipients if self._lease_waiting(r)}
            for recipient in waiting:
                self._free_orphans(db, recipient)
            return len(rows), waiting

        orphaned, waiting = await self.store.call(q)
        for recipient in waiting:
            await self._rehand(recipient)
        return orphaned

    async def reclaim(self, recipient: str, ids: list[int], owner: int) -> list[int]:
        """Lease to `owner` those of `ids` that are `recipient`'s, delivered and not yet
        acknowledged (orphaned, or still leased to a connection of the same harness that
        the daemon has not yet seen close); the ids it took, in order."""

        def q(db: sqlite3.Connection) -> list[int]:
            taken = []
            for message_id in ids:
                cur = db.execute(
                    "UPDATE messages SET lease=? WHERE id=? AND recipient=? "
                    "AND delivered_at IS NOT NULL AND acked_at IS NULL",
                    (owner, message_id, recipient),
                )
                if cur.rowcount:
                    taken.append(message_id)
            return taken

        return await self.store.call_fast(q)

    def _lease_waiting(self, recipient: str) -> bool:
        with self._waiters_lock:
            return any(w.owner is not None for w in self._waiters.get(recipient, ()))

    def _free_orphans(self, db: sqlite3.Connection, recipient: str) -> None:
        """Make `recipient`'s orphaned leases deliverable again (under the store lock)."""
        freed = db.execute(
            f"UPDATE messages SET delivered_at=NULL, lease=NULL WHERE recipient=? "
            f"AND lease={_ORPHAN} AND acked_at IS NULL",
            (recipient,),
        ).rowcount
        self.tally.redelivered += max(0, freed)
        self._orphans.discard(recipient)

    async def purge(self, recipient: str, sender: str | None = None) -> list[Message]:
        """Take `recipient`'s undelivered messages (only `sender`'s, if given) out of its
        inbox: acknowledged and marked purged, never deleted (`hive messages` still
        shows them); a message leased to a running turn stays. Returns them."""
        now = now_iso()

        def q(db: sqlite3.Connection) -> list[Message]:
            where = "recipient=? AND acked_at IS NULL AND delivered_at IS NULL"
            args: tuple[Any, ...] = (recipient,)
            if sender is not None:
                where, args = where + " AND sender=?", (*args, sender)
            rows = db.execute(
                # Delivered too: an undelivered row is what a `recv` claims.
                "UPDATE messages SET delivered_at=?, acked_at=?, purged_at=? "
                f"WHERE {where} RETURNING {_COLUMNS}",
                (now, now, now, *args),
            ).fetchall()
            return sorted((_message(r) for r in rows), key=lambda m: m.id)

        return await self.store.call(q)

    # --- reading -------------------------------------------------------------------

    async def messages(
        self, agent: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Message]:
        """Messages newest first, optionally to or from `agent`, one page of them."""
        page = Page(limit, before_id=before_id, budget=self.page_bytes)
        where, params = page.where()

        def q(db: sqlite3.Connection) -> list[Message]:
            if agent is None:
                rows = db.execute(
                    f"SELECT {_COLUMNS}, size FROM messages WHERE {where} ORDER BY id DESC LIMIT ?",
                    (*params, page.limit),
                )
            else:
                rows = db.execute(
                    f"SELECT {_COLUMNS}, size FROM messages WHERE (sender=? OR recipient=?) "
                    f"AND {where} ORDER BY id DESC LIMIT ?",
                    (agent, agent, *params, page.limit),
                )
            return [_message(tuple(r)[:-1]) for r in page.take(rows, _row_size)]

        return await self.store.call(q)

    async def inbox(
        self, recipient: str, limit: int = 100, after_id: int | None = None
    ) -> list[Message]:
        """Messages not yet acknowledged by `recipient`, oldest first, one page of them."""
        page = Page(limit, after_id=after_id, budget=self.page_bytes)
        where, params = page.where()

        def q(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                f"SELECT {_COLUMNS}, size FROM messages WHERE recipient=? AND "
                f"acked_at IS NULL AND {where} ORDER BY id LIMIT ?",
                (recipient, *params, page.limit),
            )
            return [_message(tuple(r)[:-1]) for r in page.take(rows, _row_size)]

        return await self.store.call(q)

    async def counts(self) -> list[dict[str, Any]]:
        """Who talks to whom: message counts per (sender, recipient)."""

        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT sender, recipient, count(*) FROM messages GROUP BY sender, recipient"
            )
            return [{"sender": s, "recipient": r, "count": n} for s, r, n in rows]

        return await self.store.call(q)


def _row_size(row: sqlite3.Row) -> int:
    return int(row["size"]) + _ROW_BYTES


def _public(message: Message) -> Message:
    """A message as events carry it: bodies are cut so one huge message cannot flood SSE."""
    if len(message.body) <= 4000:
        return message
    return dataclasses.replace(message, body=message.body[:4000] + "…")
