"""Accepting connections so that no client, and no shortage of file descriptors, can end
the daemon.

anyio's `Listener.serve` turns any `accept()` failure into `BrokenResourceError` and
returns through the task group: one agent opening ~1,100 connections to its own socket
(EMFILE at systemd's default soft limit) ended hive-c0re. Here an accept error of any
kind (EMFILE, ENFILE, ENOBUFS, ECONNABORTED, ...) is logged at most once per
`LOG_EVERY` seconds, waits a short backoff (the pending connection stays in the
backlog, so retrying at once would spin) and accepting goes on.

Each party (the operator on host.sock, one agent on its socket) holds a `Slots`: a
connection over its cap is told `too_many_connections` in one line and closed after a
short linger (so the line is read, not lost to a reset; at most `MAX_LINGERING` at once,
past that closed at once), so a flood from one agent holds at most its cap plus that
many descriptors, and never starves the host socket or the other agents.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from controller.protocol import encode_error
from reconcilers.backoff import Backoff

__all__ = ["ACCEPT_BACKOFF", "LOG_EVERY", "Slots", "bind_tcp", "serve_listener"]

log = logging.getLogger(__name__)

ACCEPT_BACKOFF = Backoff(0.01, 0.5)
LOG_EVERY = 10.0
# How long, and for how many connections at once, a refusal waits for its line to be read.
LINGER = 0.5
MAX_LINGERING = 64


@dataclass
class Slots:
    """How many connections one party may hold at once, and how many it holds."""

    who: str
    limit: int
    held: int = 0

    def take(self) -> bool:
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held -= 1


class _Throttled:
    """A warning logged at most once per `every` seconds, with how many were suppressed."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} more since the last report)"
        log.warning(msg, *args)
        self._last, self._suppressed = now, 0


def _tell(stream: SocketStream, slots: Slots) -> None:
    """Tell a connection over the cap why, without waiting on it, and drop what it sent
    already (a close with unread data would reset the connection and lose the line)."""
    line = encode_error(
        None,
        "too_many_connections",
        f"{slots.who} holds {slots.held} connections, the limit; close one and retry",
    )
    sock = stream.extra(SocketAttribute.raw_socket)
    # A fresh socket takes a line at once; a peer already gone learns nothing either way.
    with contextlib.suppress(OSError):
        sock.send(line)
        for _ in range(16):
            if not sock.recv(65536, socket.MSG_DONTWAIT):
                break


async def _linger(stream: SocketStream) -> None:
    """Close a refused connection gently: a socket closed with unread data resets the
    connection, and a client that had sent its request would lose the line. So: no more
    writing, and what the client sends meanwhile is read and dropped (a moment, a bound)."""
    with anyio.move_on_after(LINGER), contextlib.suppress(Exception):
        await stream.send_eof()
        dropped = 0
        while dropped < 64 * 1024:
            dropped += len(await stream.receive())
    with anyio.CancelScope(shield=True):
        await stream.aclose()


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port), non-blocking."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_listener(
    listener: SocketListener,
    handle: Callable[[SocketStream], Awaitable[None]],
    slots: Slots,
    *,
    backoff: Backoff = ACCEPT_BACKOFF,
) -> None:
    """Accept until the listener is closed or this is cancelled; every connection within
    `slots` runs `handle` in its own task."""
    errors = _Throttled(LOG_EVERY)
    refusals = _Throttled(LOG_EVERY)
    failures = 0
    lingering = 0
    async with anyio.create_task_group() as tg:

        async def linger(stream: SocketStream) -> None:
            nonlocal lingering
            lingering += 1
            try:
                await _linger(stream)
            finally:
                lingering -= 1

        async def run(stream: SocketStream) -> None:
            try:
                await handle(stream)
            except Exception:
                # One connection's failure must never take the listener down.
                log.exception("a connection on %s failed", slots.who)
            finally:
                slots.give_back()

        while True:
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            except (anyio.BrokenResourceError, OSError) as exc:
                failures += 1
                cause = exc.__cause__ or exc
                errors.warning("accepting on %s failed: %s; backing off", slots.who, cause)
                await anyio.sleep(backoff.delay(failures))
                continue
            failures = 0
            if not slots.take():
                refusals.warning("%s is over its %d connections; refusing", slots.who, slots.limit)
                _tell(stream, slots)
                if lingering < MAX_LINGERING:
                    tg.start_soon(linger, stream)
                else:  # a flood: no descriptor held for it (a client that sent may miss it)
                    with anyio.CancelScope(shield=True):
                        await stream.aclose()
                continue
            tg.start_soon(run, stream)
