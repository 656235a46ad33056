"""The audit log: the events that change what runs or what the operator decided
(`events.AUDITED`), kept in the store's `events` table. Writes are batched off the bus
and the table is pruned to `keep` rows. Reading filters by type prefix (`approval`,
`agent.kill`), checked against the known types so a typo is an error, not an empty log.
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
from controller.errors import InvalidError
from controller.events import AUDITED, EventType
from controller.paging import Page
from controller.protocol import jsonable
from controller.store import Store
from reconcilers.backoff import Backoff

__all__ = ["EventLog"]

log = logging.getLogger(__name__)
RETRY = Backoff(0.5, 30.0)


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
            [(e.ts, e.type, json.dumps(jsonable(e.data))) for e in batch],
        )
        db.execute("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (self.keep,))

    async def recent(
        self, limit: int = 100, type_prefix: str = "", page: Page | None = None
    ) -> list[dict[str, Any]]:
        """The newest entries first; only the types starting with `type_prefix`; with a
        `page` (a client's list), one page of them."""
        types = EventType.matching(type_prefix, AUDITED)
        if not types:
            known = ", ".join(sorted({t.family for t in AUDITED}))
            raise InvalidError(
                f"no audited event type starts with {type_prefix!r}; try one of {known}"
            )
        where, params = page.where() if page is not None else ("1", ())
        limit = page.limit if page is not None else limit

        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            marks = ",".join("?" for _ in types)
            rows = db.execute(
                f"SELECT id, ts, type, data FROM events WHERE type IN ({marks}) AND {where} "
                "ORDER BY id DESC LIMIT ?",
                (*types, *params, limit),
            )
            found = ({"id": i, "ts": ts, "type": t, **json.loads(d)} for i, ts, t, d in rows)
            return page.take(found) if page is not None else list(found)

        return await self.store.call(q)
