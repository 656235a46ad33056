"""Agent status, reconcile runs and holds in the store: the `Records` the reconcilers use.

Every change is published on the bus (`agent.status`, `reconcile.run`, `agent.hold`), so
`hive watch` and the dashboard see reconciles as they happen.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from controller.bus import Bus, EventType
from controller.store import Store, now_iso
from reconcilers.status import AgentStatus, Run

__all__ = ["StoreRecords"]

_STATUS_FIELDS = [f.name for f in dataclasses.fields(AgentStatus)]


def _status_from_row(row: sqlite3.Row) -> AgentStatus:
    values: dict[str, Any] = {k: row[k] for k in _STATUS_FIELDS}
    for flag in ("ready", "reconciling", "stalled"):
        values[flag] = bool(values[flag])
    return AgentStatus(**values)


class StoreRecords:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    async def hold(self, name: str) -> str | None:
        def q(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT reason FROM holds WHERE name=?", (name,)).fetchone()
            return None if row is None else str(row[0])

        return await self.store.call(q)

    async def holds(self) -> dict[str, str]:
        def q(db: sqlite3.Connection) -> dict[str, str]:
            return {r[0]: r[1] for r in db.execute("SELECT name, reason FROM holds")}

        return await self.store.call(q)

    async def set_hold(self, name: str, reason: str | None) -> None:
        def q(db: sqlite3.Connection) -> None:
            if reason is None:
                db.execute("DELETE FROM holds WHERE name=?", (name,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO holds(name, reason, created_at) VALUES (?,?,?)",
                    (name, reason, now_iso()),
                )

        await self.store.call(q)
        self.bus.publish(EventType.AGENT_HOLD, agent=name, hold=reason)

    async def status(self, name: str) -> AgentStatus | None:
        def q(db: sqlite3.Connection) -> AgentStatus | None:
            row = db.execute("SELECT * FROM agent_status WHERE name=?", (name,)).fetchone()
            return None if row is None else _status_from_row(row)

        return await self.store.call(q)

    async def statuses(self) -> dict[str, AgentStatus]:
        def q(db: sqlite3.Connection) -> dict[str, AgentStatus]:
            return {
                r["name"]: _status_from_row(r) for r in db.execute("SELECT * FROM agent_status")
            }

        return await self.store.call(q)

    async def record(self, status: AgentStatus, run: Run | None) -> None:
        def q(db: sqlite3.Connection) -> None:
            values = dataclasses.asdict(status)
            values["updated_at"] = now_iso()
            cols = ",".join(values)
            marks = ",".join("?" for _ in values)
            db.execute(
                f"INSERT OR REPLACE INTO agent_status({cols}) VALUES ({marks})",
                tuple(values.values()),
            )
            if run is not None:
                _insert_run(db, run)

        await self.store.call(q)
        self.bus.publish(EventType.AGENT_STATUS, **dataclasses.asdict(status))
        if run is not None:
            self.bus.publish(EventType.RECONCILE_RUN, **dataclasses.asdict(run))

    async def forget(self, name: str, run: Run) -> None:
        def q(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM agent_status WHERE name=?", (name,))
            if run.action != "none":
                _insert_run(db, run)

        await self.store.call(q)
        self.bus.publish(EventType.AGENT_REMOVED, agent=name)
        if run.action != "none":
            self.bus.publish(EventType.RECONCILE_RUN, **dataclasses.asdict(run))

    async def runs(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        def q(db: sqlite3.Connection) -> list[dict[str, Any]]:
            if name is None:
                rows = db.execute("SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = db.execute(
                    "SELECT * FROM reconcile_runs WHERE name=? ORDER BY id DESC LIMIT ?",
                    (name, limit),
                )
            return [dict(r) for r in rows]

        return await self.store.call(q)


def _insert_run(db: sqlite3.Connection, run: Run) -> None:
    db.execute(
        "INSERT INTO reconcile_runs(name, started_at, duration_ms, action, outcome, message,"
        " rev) VALUES (?,?,?,?,?,?,?)",
        (run.name, run.started_at, run.duration_ms, run.action, run.outcome, run.message, run.rev),
    )
