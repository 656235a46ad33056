"""A work queue in the controller-runtime mould.

Requests are keys (agent names), never events. A key waiting in the queue is there once,
however often it is added. A key being reconciled is never handed to a second worker: if
it is added meanwhile it is marked dirty and runs again after the current run. A run that
raises backs off exponentially per key (capped); `TerminalError` is recorded and not
retried; `Result(requeue_after=...)` asks for a later run. Time comes from an injectable
clock so tests need no long sleeps.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

__all__ = ["Backoff", "Result", "TerminalError", "WorkQueue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None


class TerminalError(Exception):
    """Raised by a reconcile that cannot succeed by retrying (e.g. an invalid spec)."""


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 60.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * math.pow(2, failures - 1))


Reconcile = Callable[[str], Awaitable[Result]]


class WorkQueue:
    def __init__(
        self, reconcile: Reconcile, *, workers: int = 4, backoff: Backoff | None = None
    ) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self.backoff = backoff or Backoff()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self.failures: dict[str, int] = {}
        self._wakeup = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._settled = anyio.Event()
        self.runs = 0

    def add(self, key: str) -> bool:
        """Queue `key`; returns False if it was already waiting."""
        if key in self._active:
            self._dirty.add(key)
            return True
        if key in self._queued:
            return False
        self._queued.add(key)
        self._queue.append(key)
        self._wakeup.set()
        return True

    def add_after(self, key: str, delay: float) -> None:
        if self._tg is None:
            raise RuntimeError("the work queue is not running")
        if delay <= 0:
            self.add(key)
            return

        async def later() -> None:
            await anyio.sleep(delay)
            self.add(key)

        self._tg.start_soon(later)

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._active)

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running (tests and benchmarks use it)."""
        while self._queue or self._active:
            self._settled = anyio.Event()
            await self._settled.wait()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for _ in range(self._workers):
                tg.start_soon(self._worker)
            task_status.started()

    async def _next(self) -> str:
        while True:
            for _ in range(len(self._queue)):
                key = self._queue.popleft()
                if key in self._active:
                    self._queue.append(key)
                    continue
                self._queued.discard(key)
                return key
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._active.add(key)
            try:
                result = await self._run(key)
            finally:
                self._active.discard(key)
            self.runs += 1
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif result is not None and result.requeue_after is not None:
                self.add_after(key, result.requeue_after)
            self._settled.set()
            # Wake a sibling that may be waiting for this key to be released.
            self._wakeup.set()

    async def _run(self, key: str) -> Result | None:
        try:
            result = await self._reconcile(key)
        except TerminalError as exc:
            log.warning("reconcile %s failed for good: %s", key, exc)
            self.failures.pop(key, None)
            return None
        except Exception:
            failures = self.failures.get(key, 0) + 1
            self.failures[key] = failures
            delay = self.backoff.delay(failures)
            log.exception("reconcile %s failed (%d); retrying in %.2fs", key, failures, delay)
            return Result(requeue_after=delay)
        self.failures.pop(key, None)
        return result
