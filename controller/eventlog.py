"""The audit log: the events that change what runs or what the operator decided, kept in
the store's `events` table (approvals, applied moves, holds and lifecycle actions,
questions). Messages and turn states are not copied here: they have their own tables or
are ephemeral. Writes are batched off the bus and the table is pruned to `keep` rows.
A batch that cannot be written (the disk is full) is kept and retried with backoff,
gathering what arrives meanwhile (at most `keep` events), so the daemon lives on and
the audit log catches up once there is space.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

import anyio
from anyio.abc import TaskStatus

from controller.bus import Bus, Event
from controller.paging import Page
from controller.store import Store
from reconcilers.backoff import Backoff

__all__ = ["AUDITED", "EventLog"]

log = logging.getLogger(__name__)
RETRY = Backoff(0.5, 30.0)

AUDITED = (
    "approval.created",
    "approval.approved",
    "approval.denied",
    "approval.superseded",
    "approval.failed",
    "approval.noted",
    "applied.moved",
    "agent.hold",
    "agent.start",
    "agent.stop",
    "agent.restart",
    "agent.kill",
    "question.asked",
    "question.answered",
    "question.cancelled",
    "question.expired",
)


class EventLog:
    def __init__(self, store: Store, bus: Bus, keep: int = 10_000) -> None:
        self.store = store
        self.bus = bus
        self.keep = keep

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self.bus.subscribe(types=AUDITED) as sub:
            task_status.started()
            while True:
                batch = [await sub.next()]
                for delay in RETRY.delays():
                    while True:
                        try:
                            batch.append(sub.next_nowait())
                        except anyio.WouldBlock:
                            break
                    del batch[: -self.keep]
                    try:
                        await self.store.call(self._write, batch)
                        break
                    except Exception as exc:
                        log.warning("audit log: %d event(s) wait: %s", len(batch), exc)
                        await anyio.sleep(delay)

    def _write(self, db: sqlite3.Connection, batch: list[Event]) -> None:
        db.executemany(
            "INSERT INTO events(ts, type, data) VALUES (?,?,?)",
            [(e.ts, e.type, json.dumps(e.data, default=str)) for e in batch],
        )
        db.execute("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (self.keep,))

    async def recent(
        self, limit: int = 100, type_prefix: str = "", page: Page | None = None
    ) -> list[dict[str, Any]]:
        """Events newest first; with a `page` (a client's list), one page of them."""
        where, params = page.where() if page is not None else ("1", ())
        limit = page.limit if page is not None else limit

        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                f"SELECT id, ts, type, data FROM events WHERE type LIKE ? AND {where} "
                "ORDER BY id DESC LIMIT ?",
                (type_prefix.replace("%", "") + "%", *params, limit),
            )
            found = ({"id": i, "ts": ts, "type": t, **json.loads(d)} for i, ts, t, d in rows)
            return page.take(found) if page is not None else list(found)

        return await self.store.call(q)
