"""The one sqlite store of hive-c0re: a single WAL connection, used off the event loop.

Every access goes through `Store.call(fn, *args)`, which runs `fn(connection, *args)` in a
worker thread under a lock, inside a transaction that commits when `fn` returns. The
modules that own a table (approvals, broker, ...) hold their SQL; this module owns only
the connection, the migrations and checkpoints. `synchronous=NORMAL` in WAL mode is
durable across a process crash (the case that matters for a daemon) at ~9x the commit
rate of FULL.

`call_fast` is for the broker's tiny hot transactions (one insert, one claim): when the
connection is free it runs them right on the event loop, saving the worker-thread round
trip (~0.1-0.3 ms, most of a message's latency); when it is busy it never waits, it takes
the thread path. With WAL and `synchronous=NORMAL` a commit does not fsync; only
checkpoints do, so automatic checkpoints are off and `serve_checkpoints` runs them in a
worker thread: nothing on the loop ever waits for the disk.

A full disk (`SQLITE_FULL`: sqlite maps ENOSPC to it, at a write or at the commit that
appends to the WAL) rolls the transaction back and raises `NoSpaceError`, which the
sockets answer as `no_space`, "no space left on device": the caller learns what to do
and nothing was changed. A checkpoint that cannot write is retried at the next interval.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import anyio

from controller.errors import NoSpaceError

__all__ = ["MIGRATIONS", "Store", "now_iso"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: the GitOps core
    """
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        sha TEXT NOT NULL,
        base TEXT NOT NULL,
        summary TEXT NOT NULL,
        author TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        plan TEXT NOT NULL,
        errors TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        approver TEXT NOT NULL DEFAULT '',
        applied_sha TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        decided_at TEXT
    );
    CREATE INDEX approvals_status ON approvals(status);
    CREATE UNIQUE INDEX approvals_ref_sha ON approvals(ref, sha);
    CREATE TABLE agent_status (
        name TEXT PRIMARY KEY,
        desired_rev TEXT NOT NULL DEFAULT '',
        observed_rev TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'missing',
        ready INTEGER NOT NULL DEFAULT 0,
        reconciling INTEGER NOT NULL DEFAULT 0,
        stalled INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE reconcile_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL,
        rev TEXT NOT NULL
    );
    CREATE INDEX reconcile_runs_name ON reconcile_runs(name, id);
    CREATE TABLE holds (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """,
    # 2: the broker and the operator's questions
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'message',
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        acked_at TEXT,
        lease INTEGER
    );
    CREATE INDEX messages_inbox ON messages(recipient, delivered_at, id);
    CREATE INDEX messages_sender ON messages(sender, id);
    CREATE TABLE questions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        asker TEXT NOT NULL,
        question TEXT NOT NULL,
        options TEXT NOT NULL,
        multi INTEGER NOT NULL,
        status TEXT NOT NULL,
        answer TEXT,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        decided_at TEXT
    );
    CREATE INDEX questions_status ON questions(status);
    """,
    # 3: the enforced gate (hive-c0re's record of applied `main`) and plans that stay true
    """
    ALTER TABLE approvals ADD COLUMN claim TEXT NOT NULL DEFAULT '';
    ALTER TABLE approvals ADD COLUMN mergeable INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE approvals ADD COLUMN merge_base TEXT NOT NULL DEFAULT '';
    ALTER TABLE approvals ADD COLUMN touched TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE approvals ADD COLUMN planned_at TEXT;
    CREATE TABLE applied_moves (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        reason TEXT NOT NULL,
        approval_id INTEGER,
        approver TEXT NOT NULL DEFAULT '',
        done INTEGER NOT NULL,
        at TEXT NOT NULL
    );
    """,
    # 4: broker quotas (each inbox's unacknowledged messages and their sizes, in a partial
    # index that holds only those rows) and idempotent sends
    """
    ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
    UPDATE messages SET size = length(CAST(body AS BLOB));
    CREATE INDEX messages_unacked ON messages(recipient, size) WHERE acked_at IS NULL;
    CREATE UNIQUE INDEX messages_idempotency ON messages(sender, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    """,
    # 5: permission questions (a harness asks whether its agent may use a tool; the
    # answer goes back to the waiting harness, not to the inbox)
    """
    ALTER TABLE questions ADD COLUMN kind TEXT NOT NULL DEFAULT 'question';
    """,
    # 6: guard rails: every finished turn of every agent (accounting), purged messages
    """
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL,
        harness_turn INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_creation_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        model TEXT NOT NULL,
        tool_calls INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX turns_once ON turns(agent, started_at, harness_turn);
    CREATE INDEX turns_by_day ON turns(day, agent);
    CREATE INDEX turns_by_agent ON turns(agent, ended_at);
    ALTER TABLE messages ADD COLUMN purged_at TEXT;
    """,
)


_SQLITE_FULL = 13


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_FULL


_last_iso: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """Now in UTC, ISO 8601 to the millisecond (formatted once per millisecond: the
    broker stamps several rows and events within one)."""
    global _last_iso
    ms = time.time_ns() // 1_000_000
    cached = _last_iso
    if cached[0] == ms:
        return cached[1]
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    _last_iso = (ms, text)
    return text


class Store:
    """A sqlite file with migrations applied; `call` runs work on it off the loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._migrate()

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; the version bump is part of the same script so
            # a crash leaves either the whole migration or none of it.
            self._conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def call_sync(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        with self._lock:
            return self._transaction(fn, *args, **kwargs)

    def _transaction(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn, *args, **kwargs)
                self._conn.execute("COMMIT")
            except BaseException:
                # sqlite may have rolled back already (it does on SQLITE_FULL); a failing
                # ROLLBACK must not hide why.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if _is_full(exc):
                raise self._no_space(exc) from exc
            raise
        return result

    def _no_space(self, exc: sqlite3.Error) -> NoSpaceError:
        return NoSpaceError(
            f"no space left on device: cannot write {self.path} ({exc}); nothing was "
            "changed. Free space on its filesystem and try again."
        )

    async def call_fast(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like `call`, on the loop when the connection is free (for tiny transactions)."""
        if self._lock.acquire(blocking=False):
            try:
                return self._transaction(fn, *args, **kwargs)
            finally:
                self._lock.release()
        return await self.call(fn, *args, **kwargs)

    async def serve_checkpoints(
        self,
        interval: float = 1.0,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Checkpoint the WAL into the database every `interval` seconds, off the loop."""
        task_status.started()
        failing = False
        while True:
            await anyio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self._checkpoint)
            except sqlite3.Error as exc:
                # The WAL keeps every commit meanwhile; a later checkpoint moves it.
                if not failing:
                    log.warning("checkpoints of %s fail (retrying): %s", self.path, exc)
                failing = True
                continue
            if failing:
                log.info("checkpoints of %s work again", self.path)
            failing = False

    def _checkpoint(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await anyio.to_thread.run_sync(lambda: self.call_sync(fn, *args, **kwargs))

    def close(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
