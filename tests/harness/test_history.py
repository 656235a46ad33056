"""History on a real sqlite file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from harness.history import open_history


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.mark.anyio
async def test_a_turn_and_its_events_are_recorded_in_order(tmp_path: Path) -> None:
    async with await open_history(tmp_path, now=Clock()) as hist:
        turn = await hist.start_turn(wake_message_id=3)
        await hist.append(turn, {"type": "system", "subtype": "init"})
        await hist.append_many(turn, [{"type": "assistant", "n": 1}, {"type": "result", "n": 2}])
        await hist.end_turn(turn, status="ok", duration_ms=1200, cost_usd=0.5, input_tokens=7)
        [row] = await hist.turns()
        stored = await hist.events_of(turn)

    assert (row.status, row.wake_message_id, row.duration_ms, row.cost_usd) == ("ok", 3, 1200, 0.5)
    assert (row.input_tokens, row.output_tokens) == (7, None)
    assert row.started_at.startswith("2026-01-01T00:00:0")
    assert row.ended_at is not None and row.ended_at > row.started_at
    assert [(e.seq, e.type) for e in stored] == [(0, "system"), (1, "assistant"), (2, "result")]
    assert stored[1].event == {"type": "assistant", "n": 1}
    assert (tmp_path / "history.sqlite").exists()


@pytest.mark.anyio
async def test_recent_returns_the_newest_events_oldest_first(tmp_path: Path) -> None:
    async with await open_history(tmp_path) as hist:
        await hist.append(None, {"type": "note", "i": 0})
        turn = await hist.start_turn()
        for i in range(1, 6):
            await hist.append(turn, {"type": "assistant", "i": i})
        recent = await hist.recent(3)
        after = await hist.recent(100, after_id=recent[0].id)

    assert [e.event["i"] for e in recent] == [3, 4, 5]
    assert [e.event["i"] for e in after] == [4, 5]
    assert recent[0].turn_id == turn


@pytest.mark.anyio
async def test_history_survives_reopening_and_marks_orphaned_turns(tmp_path: Path) -> None:
    async with await open_history(tmp_path) as hist:
        done = await hist.start_turn()
        await hist.end_turn(done, status="cancelled")
        orphan = await hist.start_turn()
        await hist.append(orphan, {"type": "assistant"})
    async with await open_history(tmp_path) as hist:
        turns = {t.id: t.status for t in await hist.turns()}
        assert turns == {done: "cancelled", orphan: "interrupted"}
        assert len(await hist.recent()) == 1
        newer = await hist.start_turn()
        assert newer > orphan


def test_the_database_uses_wal(tmp_path: Path) -> None:
    async def create() -> None:
        async with await open_history(tmp_path):
            pass

    anyio.run(create)
    conn = sqlite3.connect(tmp_path / "history.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
