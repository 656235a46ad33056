"""The agent's warm session: opened on demand, kept for an idle window, closed sooner on
the host's word, reopened when claude died or the session's spec changed.

One keeper task owns the claude process (its task group must be left by the task that
entered it); the turn loop asks for a session with `acquire(spec)` and the keeper opens
one, or hands back the warm one (switching its model with `set_model` when only that
changed). A session goes cold when no turn ran for `idle` seconds, or when `cold()` is
called (`/clear`, a new spec), or when `slot` returns: that is hive-c0re saying this
host has too many warm sessions and this one was used least recently. A running turn is
never cut short by any of these: the keeper waits for it to end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import anyio

from harness.session import Session, SessionError, SessionSpec

__all__ = ["WarmSession"]

log = logging.getLogger(__name__)

Opener = Callable[[SessionSpec], AbstractAsyncContextManager[Session]]


class WarmSession:
    def __init__(
        self,
        open_session: Opener,
        *,
        idle: float,
        slot: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._open = open_session
        self.idle = idle
        self._slot = slot
        self.session: Session | None = None
        self.cold_reason = "not started yet"
        self._wanted: SessionSpec | None = None
        self._asked = anyio.Event()
        self._opened = anyio.Event()
        self._closed = anyio.Event()
        self._closed.set()
        self._error: BaseException | None = None
        self._wake = anyio.Event()
        self._close_reason: str | None = None
        self._last_used = time.monotonic()
        self._lock = anyio.Lock()

    @property
    def warm(self) -> bool:
        return self.session is not None and self.session.alive

    def touch(self) -> None:
        """A turn ended: the idle window starts again."""
        self._last_used = time.monotonic()
        self._wake.set()

    async def cold(self, reason: str) -> None:
        """Close the warm session (after its running turn) and wait until it is closed."""
        if self.session is None:
            return
        self._close_reason = reason
        self._wake.set()
        await self._closed.wait()

    async def acquire(self, spec: SessionSpec) -> Session:
        """A live session for `spec`: the warm one when it fits, else a new one."""
        async with self._lock:
            session = self.session
            if session is not None and session.alive and session.spec.same_process(spec):
                try:
                    await session.set_model(spec.model)
                except SessionError as exc:
                    log.warning("set_model failed (%s); restarting the session", exc)
                else:
                    return session
            if session is not None:
                await self.cold("its settings changed")
            self._opened, self._error = anyio.Event(), None
            self._wanted = spec
            self._asked.set()
            await self._opened.wait()
            if self._error is not None:
                raise self._error
            assert self.session is not None
            return self.session

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self._asked.wait()
            self._asked = anyio.Event()
            spec, self._wanted = self._wanted, None
            assert spec is not None
            self._closed = anyio.Event()
            try:
                async with self._open(spec) as session:
                    self.session, self._close_reason = session, None
                    self._opened.set()
                    self.cold_reason = await self._keep(session)
                    log.info("session going cold: %s", self.cold_reason)
            except Exception as exc:  # a failed start is the turn's error, not ours
                self._error = exc
                self.cold_reason = str(exc)
            finally:
                self.session = None
                self._opened.set()
                self._closed.set()

    async def _keep(self, session: Session) -> str:
        """Wait until the session should close; returns why."""
        self._last_used = time.monotonic()
        evicted = anyio.Event()
        async with anyio.create_task_group() as tg:
            if self._slot is not None:
                tg.start_soon(self._hold_slot, evicted)
            try:
                while True:
                    if not session.alive:
                        return "claude exited"
                    if not session.busy:
                        if self._close_reason is not None:
                            return self._close_reason
                        if evicted.is_set():
                            return "the host's warm sessions are at their cap"
                    left = self._last_used + self.idle - time.monotonic()
                    if not session.busy and left <= 0:
                        return f"idle for {self.idle:g}s"
                    self._wake = anyio.Event()
                    with anyio.move_on_after(max(left, 0.0) if not session.busy else 3600):
                        await _either(self._wake, session.exited, evicted)
            finally:
                tg.cancel_scope.cancel()
        raise AssertionError("unreachable")  # mypy: the loop only returns

    async def _hold_slot(self, evicted: anyio.Event) -> None:
        assert self._slot is not None
        with contextlib.suppress(Exception):
            why = await self._slot()
            log.info("asked to go cold: %s", why)
            evicted.set()
            self._wake.set()


async def _either(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def one(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(one, event)
