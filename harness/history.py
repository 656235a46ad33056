"""An agent's history: its turns and every stream-json event, in `<HIVE_STATE>/history.sqlite`.

The agent page backfills from here on load and the SSE tail continues from the last
event id, so events have a global autoincrement id besides their per-turn `seq`.

sqlite is blocking, so every call runs in a worker thread (`anyio.to_thread.run_sync`)
on one connection, serialised by a lock. WAL with `synchronous=NORMAL` commits in ~11 µs
here, far below claude's event rate, so each append commits on its own: a harness that
dies mid-turn loses nothing it already saw. A turn still `running` when the history is
opened again belonged to a harness that died; it is marked `interrupted`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio

__all__ = ["History", "StoredEvent", "TurnRecord", "TurnStatus", "open_history"]

TurnStatus = Literal["running", "ok", "error", "cancelled", "timeout", "interrupted"]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    wake_message_id INTEGER,
    status TEXT NOT NULL DEFAULT 'running',
    duration_ms INTEGER,
    cost_usd REAL,
    input_tokens INTEGER,
    output_tokens INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    turn_id INTEGER REFERENCES turns(id),
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_turn ON events(turn_id, seq);
"""

_TURN_COLUMNS = (
    "id, started_at, ended_at, wake_message_id, status, duration_ms, cost_usd, "
    "input_tokens, output_tokens"
)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    turn_id: int | None
    seq: int
    ts: str
    type: str
    event: dict[str, Any]


@dataclass(frozen=True)
class TurnRecord:
    id: int
    started_at: str
    ended_at: str | None
    wake_message_id: int | None
    status: str
    duration_ms: int | None
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class History:
    """One agent's history database; use `open_history` to get one."""

    def __init__(self, conn: sqlite3.Connection, now: Callable[[], datetime] = _utcnow) -> None:
        self._conn = conn
        self._now = now
        self._lock = anyio.Lock()
        self._seq: dict[int | None, int] = {}

    async def __aenter__(self) -> History:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, fn: Callable[[], T]) -> T:
        async with self._lock:
            return await anyio.to_thread.run_sync(fn)

    def _ts(self) -> str:
        return self._now().isoformat(timespec="milliseconds")

    async def start_turn(self, wake_message_id: int | None = None) -> int:
        ts = self._ts()

        def insert() -> int:
            with self._conn:
                cur = self._conn.execute(
                    "INSERT INTO turns (started_at, wake_message_id) VALUES (?, ?)",
                    (ts, wake_message_id),
                )
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._run(insert)

    async def end_turn(
        self,
        turn_id: int,
        *,
        status: TurnStatus,
        duration_ms: int | None = None,
        cost_usd: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        values = (self._ts(), status, duration_ms, cost_usd, input_tokens, output_tokens, turn_id)

        def update() -> None:
            with self._conn:
                self._conn.execute(
                    "UPDATE turns SET ended_at = ?, status = ?, duration_ms = ?, cost_usd = ?, "
                    "input_tokens = ?, output_tokens = ? WHERE id = ?",
                    values,
                )

        await self._run(update)
        self._seq.pop(turn_id, None)

    async def append(self, turn_id: int | None, event: Mapping[str, Any]) -> StoredEvent:
        """Record one event (inside a turn, or outside one with `turn_id=None`)."""
        return (await self.append_many(turn_id, [event]))[0]

    async def append_many(
        self, turn_id: int | None, events: Sequence[Mapping[str, Any]]
    ) -> list[StoredEvent]:
        """Record several events in one transaction."""
        ts = self._ts()
        rows = []
        for event in events:
            seq = self._seq.get(turn_id, 0)
            self._seq[turn_id] = seq + 1
            kind = str(event.get("type", "unknown"))
            rows.append((turn_id, seq, ts, kind, json.dumps(event, default=str), dict(event)))

        def insert() -> list[StoredEvent]:
            stored = []
            with self._conn:
                for turn, seq, when, kind, text, event in rows:
                    cur = self._conn.execute(
                        "INSERT INTO events (turn_id, seq, ts, type, json) VALUES (?, ?, ?, ?, ?)",
                        (turn, seq, when, kind, text),
                    )
                    assert cur.lastrowid is not None
                    stored.append(StoredEvent(cur.lastrowid, turn, seq, when, kind, event))
            return stored

        return await self._run(insert)

    async def recent(
        self, limit: int = 200, *, after_id: int = 0, before_id: int | None = None
    ) -> list[StoredEvent]:
        """The newest `limit` events with id > `after_id` (and < `before_id`: the page
        before one already shown), oldest first."""

        def select() -> list[StoredEvent]:
            rows = self._conn.execute(
                "SELECT id, turn_id, seq, ts, type, json FROM events WHERE id > ? AND id < ? "
                "ORDER BY id DESC LIMIT ?",
                (after_id, before_id if before_id is not None else 2**63 - 1, limit),
            ).fetchall()
            return [
                StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in reversed(rows)
            ]

        return await self._run(select)

    async def events_of(self, turn_id: int) -> list[StoredEvent]:
        def select() -> list[StoredEvent]:
            rows = self._conn.execute(
                "SELECT id, turn_id, seq, ts, type, json FROM events "
                "WHERE turn_id = ? ORDER BY seq",
                (turn_id,),
            ).fetchall()
            return [StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

        return await self._run(select)

    async def turns(self, limit: int = 50) -> list[TurnRecord]:
        """The newest `limit` turns, newest first."""

        def select() -> list[TurnRecord]:
            rows = self._conn.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [TurnRecord(*r) for r in rows]

        return await self._run(select)

    async def aclose(self) -> None:
        await self._run(self._conn.close)


def _connect(path: Path, ts: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The connection moves between worker threads; the History lock serialises its use.
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        with conn:
            conn.execute(
                "UPDATE turns SET status = 'interrupted', ended_at = ? WHERE status = 'running'",
                (ts,),
            )
    except Exception:
        conn.close()
        raise
    return conn


async def open_history(state_dir: str | Path, *, now: Callable[[], datetime] = _utcnow) -> History:
    """Open (creating if needed) `<state_dir>/history.sqlite`; close it with `aclose`."""
    path = Path(state_dir) / "history.sqlite"
    ts = now().isoformat(timespec="milliseconds")
    conn = await anyio.to_thread.run_sync(_connect, path, ts)
    return History(conn, now)
