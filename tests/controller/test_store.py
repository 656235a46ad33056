from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from controller.errors import NoSpaceError
from controller.store import MIGRATIONS, Store

pytestmark = pytest.mark.anyio


def test_migrations_run_once_and_are_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "hive.sqlite")
    assert store.version == len(MIGRATIONS)
    store.call_sync(
        lambda db: db.execute(
            "INSERT INTO holds(name, reason, created_at) VALUES ('a', 'r', 'now')"
        )
    )
    store.close()
    again = Store(tmp_path / "hive.sqlite")
    assert again.version == len(MIGRATIONS)
    rows = again.call_sync(lambda db: db.execute("SELECT name FROM holds").fetchall())
    assert [r[0] for r in rows] == ["a"]
    again.close()


def test_a_failing_transaction_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "hive.sqlite")

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO holds(name, reason, created_at) VALUES ('a', 'r', 'now')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.call_sync(half_done)
    assert store.call_sync(lambda db: db.execute("SELECT count(*) FROM holds").fetchone()[0]) == 0
    store.close()


async def test_call_fast_never_waits_for_a_busy_connection(tmp_path: Path) -> None:
    store = Store(tmp_path / "hive.sqlite")
    release = threading.Event()
    holding = threading.Event()

    def slow(db: sqlite3.Connection) -> None:
        holding.set()
        release.wait(5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(store.call, slow)
        await anyio.to_thread.run_sync(holding.wait)
        loop_blocked = False

        async def watchdog() -> None:
            nonlocal loop_blocked
            await anyio.sleep(0.05)
            loop_blocked = not release.is_set()
            release.set()

        tg.start_soon(watchdog)
        # The connection is busy: call_fast takes the thread path and the loop stays free.
        count = await store.call_fast(
            lambda db: db.execute("SELECT count(*) FROM holds").fetchone()[0]
        )
    assert count == 0
    assert loop_blocked  # the watchdog ran while call_fast waited
    store.close()


async def test_checkpoints_move_the_wal_into_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "hive.sqlite")

    def insert(db: sqlite3.Connection, i: int) -> None:
        db.execute(
            "INSERT INTO holds(name, reason, created_at) VALUES (?, ?, 'now')",
            (f"a{i}", "r" * 500),
        )

    db_file = tmp_path / "hive.sqlite"
    before = db_file.stat().st_size
    for i in range(200):
        await store.call_fast(insert, i)
    # Automatic checkpoints are off: commits only grew the WAL.
    assert db_file.stat().st_size == before
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve_checkpoints, 0.01)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert db_file.stat().st_size > before + 200 * 500
    store.close()


def test_a_full_database_raises_no_space_and_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "hive.sqlite")
    # A database that may not grow: the same SQLITE_FULL a full disk gives.
    pages = store.call_sync(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    store.call_sync(lambda db: db.execute(f"PRAGMA max_page_count={pages}"))

    def grow(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO holds(name, reason, created_at) VALUES ('a', 'r', 'now')")
        db.execute(
            "INSERT INTO holds(name, reason, created_at) VALUES ('b', ?, 'now')", ("x" * 100_000,)
        )

    with pytest.raises(NoSpaceError, match="no space left on device"):
        store.call_sync(grow)
    assert store.call_sync(lambda db: db.execute("SELECT count(*) FROM holds").fetchone()[0]) == 0
    store.close()
