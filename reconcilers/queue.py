"""A work queue in the controller-runtime mould (`processNextWorkItem`, kopf's queueing).

Requests are keys (agent names), never events. A ready key waits in the queue once,
however often it is added, and is handed to exactly one worker: ready keys sit in one
FIFO whose length a semaphore counts, so every `add` wakes one idle worker and different
keys run concurrently, up to `workers` at once. A key being reconciled is never handed
out again: added meanwhile it is marked dirty and runs once more after the current run.

Delayed runs (`add_after`, `Result(requeue_after=...)`, the backoff after a failure) live
in one heap served by one timer task, with at most one due time per key: the earliest
asked for wins, and an immediate `add` runs the key now and drops its delayed run (that
run reads everything afresh and asks again if it still needs one). A run that raises
backs off exponentially per key; `TerminalError` is recorded and not retried.

`wait_idle()` returns, to every caller, once no key is ready, running or due; keys
delayed into the future do not count (a key backing off for a minute would otherwise
hold every caller for that minute; a test with a fake clock advances it and waits again).
`wait_settled()` waits for the delayed keys too: the queue then does nothing more until
a key is added. Every run is counted and timed per key (`stats`: plain attributes, for
metrics). Time comes from an injectable clock, so tests need no sleeps.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

from reconcilers.backoff import Backoff
from reconcilers.clock import Clock, SystemClock, wait_event

__all__ = ["KeyStats", "Observer", "Reconcile", "Result", "TerminalError", "WorkQueue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None
    # What the run came to, for metrics: `ok`, or the reconciler's word for a failure
    # it handled itself (`error`, `stalled`); a run that raises counts as `error`.
    outcome: str = "ok"


class TerminalError(Exception):
    """Raised by a reconcile that cannot succeed by retrying (e.g. an invalid spec)."""


@dataclass
class KeyStats:
    """One key's reconciles so far: plain counters, for metrics."""

    runs: int = 0
    failures: int = 0  # runs that raised, `TerminalError` included
    consecutive_failures: int = 0  # since the last success: what the backoff counts
    last_duration: float = 0.0  # seconds, on the queue's clock
    total_duration: float = 0.0
    last_error: str = ""


Reconcile = Callable[[str], Awaitable[Result]]
# Told of every run: (key, outcome, seconds); must not block (metrics count in place).
Observer = Callable[[str, str, float], None]


class WorkQueue:
    def __init__(
        self,
        reconcile: Reconcile,
        *,
        workers: int = 4,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        observe: Observer | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a work queue needs at least one worker, not {workers}")
        self._reconcile = reconcile
        self.workers = workers
        self.backoff = backoff or Backoff()
        self.clock: Clock = clock or SystemClock()
        self._observe = observe
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._available = anyio.Semaphore(0)  # counts `_ready`: one token per ready key
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # may hold stale entries; `_due` rules
        self._timer_wake = anyio.Event()
        self._changed = anyio.Event()
        self.stats: dict[str, KeyStats] = {}
        self.runs = 0
        self.retries = 0
        self.peak_active = 0

    # --- adding ----------------------------------------------------------------------

    def add(self, key: str) -> bool:
        """Queue `key` to run now; False if a run it would cause was already waiting."""
        self._due.pop(key, None)
        if key in self._active:
            if key in self._dirty:
                return False
            self._dirty.add(key)
            return True
        if key in self._queued:
            return False
        self._queued.add(key)
        self._ready.append(key)
        self._available.release()
        return True

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` to run in `delay` seconds (now when <= 0); an earlier due time of
        the same key is kept."""
        if delay <= 0:
            self.add(key)
            return
        due = self.clock.now() + delay
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        if not self._heap or due < self._heap[0][0]:
            self._timer_wake.set()
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(d, k) for k, d in self._due.items()]
            heapq.heapify(self._heap)

    # --- observing -------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Keys ready to run, waiting for a worker."""
        return len(self._ready)

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def delayed(self) -> int:
        return len(self._due)

    @property
    def idle(self) -> bool:
        """No key is ready, running or due (see the module docstring)."""
        if self._queued or self._active:
            return False
        now = self.clock.now()
        return all(due > now for due in self._due.values())

    async def wait_idle(self) -> None:
        """Return once the queue is `idle`; any number of callers may wait."""
        while not self.idle:
            await self._changed.wait()

    async def wait_settled(self) -> None:
        """Return once nothing is ready, running or delayed."""
        while self._queued or self._active or self._due:
            await self._changed.wait()

    # --- serving ---------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve_timer)
            for _ in range(self.workers):
                tg.start_soon(self._work)
            task_status.started()

    async def _serve_timer(self) -> None:
        while True:
            self._timer_wake = anyio.Event()
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                if self._due.get(key) == due:
                    self.add(key)
            deadline = self._heap[0][0] if self._heap else None
            await wait_event(self.clock, self._timer_wake, deadline)

    async def _work(self) -> None:
        while True:
            await self._available.acquire()
            key = self._ready.popleft()
            self._queued.discard(key)
            self._active.add(key)
            self.peak_active = max(self.peak_active, len(self._active))
            try:
                result = await self._run(key)
            finally:
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif result.requeue_after is not None:
                self.add_after(key, result.requeue_after)
            # Wake every waiter at once (each re-checks): one shared event, replaced.
            self._changed.set()
            self._changed = anyio.Event()

    async def _run(self, key: str) -> Result:
        stats = self.stats.setdefault(key, KeyStats())
        started = self.clock.now()
        result = Result()
        outcome = "error"
        try:
            result = await self._reconcile(key)
            outcome = result.outcome
        except TerminalError as exc:
            log.warning("reconcile %s failed for good: %s", key, exc)
            stats.failures += 1
            stats.consecutive_failures = 0
            stats.last_error = str(exc) or type(exc).__name__
        except Exception as exc:
            stats.failures += 1
            stats.consecutive_failures += 1
            stats.last_error = str(exc) or type(exc).__name__
            delay = self.backoff.delay(stats.consecutive_failures)
            log.exception(
                "reconcile %s failed (%d); retrying in %.2fs",
                key,
                stats.consecutive_failures,
                delay,
            )
            self.retries += 1
            result = Result(requeue_after=delay)
        else:
            stats.consecutive_failures = 0
            stats.last_error = ""
        duration = self.clock.now() - started
        stats.runs += 1
        stats.last_duration = duration
        stats.total_duration += duration
        self.runs += 1
        if self._observe is not None:
            self._observe(key, outcome, duration)
        return result
