from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from reconcilers.clock import SystemClock, iso, wait_event
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.anyio


async def test_wait_event_returns_at_the_deadline_of_the_clock() -> None:
    clock = FakeClock()
    event = anyio.Event()
    outcome: list[bool] = []

    async def waiter() -> None:
        outcome.append(await wait_event(clock, event, clock.now() + 10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        clock.advance(9)
        await anyio.wait_all_tasks_blocked()
        assert outcome == []
        clock.advance(1)
    assert outcome == [False]
    assert clock.sleepers == 0


async def test_wait_event_returns_when_the_event_is_set() -> None:
    clock = FakeClock()
    event = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_event, clock, event, clock.now() + 3600)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1
        event.set()
    assert clock.sleepers == 0  # the cancelled alarm no longer counts
    assert await wait_event(clock, event, None)


async def test_the_fake_clock_moves_wall_and_monotonic_time_together() -> None:
    clock = FakeClock(wall=datetime(2026, 5, 1, 12, tzinfo=UTC))
    before = clock.now()
    clock.advance(90)
    assert clock.now() - before == 90
    assert clock.utcnow() == datetime(2026, 5, 1, 12, 1, 30, tzinfo=UTC)
    assert iso(clock.utcnow()) == "2026-05-01T12:01:30.000+00:00"
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


async def test_the_system_clock_is_the_real_time() -> None:
    clock = SystemClock()
    assert abs(clock.now() - time.monotonic()) < 1
    assert abs(clock.utcnow() - datetime.now(UTC)) < timedelta(seconds=1)
    start = clock.now()
    await clock.sleep_until(start + 0.01)
    assert clock.now() - start >= 0.009
    await clock.sleep_until(start - 5)  # already past: returns at once
