"""A clock that moves only when the test says so (honours `reconcilers.clock.Clock`).

`advance(seconds)` moves both the monotonic and the wall time and wakes every sleeper
whose deadline has come; sleepers run at the loop's next turn, so a test follows an
advance with `await queue.wait_idle()` or an event, never a real sleep.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel

__all__ = ["FakeClock"]


class FakeClock:
    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._start = start
        self._now = start
        self._wall = wall or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def utcnow(self) -> datetime:
        return self._wall + timedelta(seconds=self._now - self._start)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), woken))
        await woken.wait()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        """How many waits are parked on this clock (cancelled ones drop out)."""
        self._sleepers = [s for s in self._sleepers if s[2].statistics().tasks_waiting]
        heapq.heapify(self._sleepers)
        return len(self._sleepers)

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline a live sleeper waits for."""
        return self._sleepers[0][0] if self.sleepers else None
