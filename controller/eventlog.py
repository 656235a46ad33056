"""The audit log: the events that change what runs or what the operator decided
(`events.AUDITED`), kept in the store's `events` table. Writes are batched off the bus
and the table is pruned to `keep` rows. Reading filters by type prefix (`approval`,
`agent.kill`), checked against the known types so a typo is an error, not an empty log.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import anyio
from anyio.abc import TaskStatus

from controller.bus import Bus, Event
from controller.errors import InvalidError
from controller.events import AUDITED, EventType
from controller.protocol import jsonable
from controller.store import Store

__all__ = ["EventLog"]


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
                while True:
                    try:
                        batch.append(sub.next_nowait())
                    except anyio.WouldBlock:
                        break
                await self.store.call(self._write, batch)

    def _write(self, db: sqlite3.Connection, batch: list[Event]) -> None:
        db.executemany(
            "INSERT INTO events(ts, type, data) VALUES (?,?,?)",
            [(e.ts, e.type, json.dumps(jsonable(e.data))) for e in batch],
        )
        db.execute("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (self.keep,))

    async def recent(self, limit: int = 100, type_prefix: str = "") -> list[dict[str, Any]]:
        """The newest entries first; only the types starting with `type_prefix`."""
        types = EventType.matching(type_prefix, AUDITED)
        if not types:
            known = ", ".join(sorted({t.family for t in AUDITED}))
            raise InvalidError(
                f"no audited event type starts with {type_prefix!r}; try one of {known}"
            )

        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            marks = ",".join("?" for _ in types)
            rows = db.execute(
                f"SELECT id, ts, type, data FROM events WHERE type IN ({marks}) "
                "ORDER BY id DESC LIMIT ?",
                (*types, limit),
            )
            return [{"id": i, "ts": ts, "type": t, **json.loads(d)} for i, ts, t, d in rows]

        return await self.store.call(q)
