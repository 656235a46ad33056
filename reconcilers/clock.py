"""Time as a seam: what "now" is and how long to wait come from an injectable `Clock`.

The work queue (delays and backoff), the agents reconciler (durations, the crash window,
when to restart) and the operator's questions (expiry) take a clock instead of calling
`time` and `datetime` themselves, so a test hands them a fake clock and moves time on by
hand (kopf does the same): a backoff of a minute is tested in microseconds, without
sleeping. `SystemClock` is the default everywhere.

`now()` is monotonic seconds, for intervals and deadlines; `utcnow()` is the wall clock,
for timestamps a person reads and for deadlines stored in the database. Only the loop's
own timers may wait: every wait goes through `sleep_until` (or `wait_event`), which a
fake clock serves from its own timeline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock", "iso", "wait_event"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (only differences mean anything)."""
        ...

    def utcnow(self) -> datetime:
        """The wall clock, timezone-aware UTC."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now() >= deadline` (at once, after a checkpoint, if it already is)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real time: `time.monotonic` (the event loop's own clock) and `datetime.now`."""

    def now(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.monotonic()))

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


def iso(moment: datetime) -> str:
    """How timestamps are written everywhere (the store's `now_iso` format)."""
    return moment.isoformat(timespec="milliseconds")


async def wait_event(clock: Clock, event: anyio.Event, deadline: float | None) -> bool:
    """Wait until `event` is set or `clock` reaches `deadline` (None: no deadline).

    Returns whether the event was set. This is `move_on_after` on the clock's timeline,
    which a fake clock controls (anyio's own deadlines follow only the real time).
    """
    if deadline is None or event.is_set():
        await event.wait()
        return True
    async with anyio.create_task_group() as tg:

        async def alarm() -> None:
            await clock.sleep_until(deadline)
            tg.cancel_scope.cancel()

        tg.start_soon(alarm)
        await event.wait()
        tg.cancel_scope.cancel()
    return event.is_set()
