"""Serving a command table on a unix socket with the JSON-lines protocol.

Each connection gets a *session* from a factory: the session knows who is speaking (the
host operator, or the one agent whose socket this is) and is closed when the peer goes,
which is how the broker returns leased messages of a dead harness. Bad input of any kind
gets an error answer (`invalid`, never `internal`) and the connection stays usable; only
a line over `MAX_LINE` closes it, because its framing is lost.

A connection that sends nothing for `idle_timeout` seconds while nothing is in flight
(no long-poll, no stream, no lease its session holds: `Session.busy`) is told
`idle_timeout` in one line and closed, so forgotten connections do not pile up against
the caps (`controller/listener.py`). The server decides only between requests, so a
request the client sent that the line answers instead was never carried out: the client
may send it again on a new connection (`protocol.Client` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.abc import ByteStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.commands import CommandTable
from controller.errors import HiveError
from controller.listener import Slots, serve_listener
from controller.protocol import (
    MAX_LINE,
    ProtocolError,
    decode_request,
    encode_error,
    encode_event,
    encode_result,
    open_transport_stream,
)
from gitstore.errors import NoSpaceError as GitNoSpaceError

__all__ = ["Session", "Slots", "serve_socket"]

log = logging.getLogger(__name__)
C = TypeVar("C", bound="Session")


class Session(Protocol):
    @property
    def busy(self) -> bool:
        """Whether the connection holds something that must not time out (a lease)."""
        ...

    async def close(self) -> None: ...


# Raised by handlers for input no check caught (a number too big for a conversion, a
# structure too deep, text that cannot be encoded): still the caller's input, so
# `invalid`, logged so the check can be added where it belongs.
_INPUT_ERRORS = (OverflowError, RecursionError, UnicodeError)
LINGER = 1.0


class _Connection(Generic[C]):
    def __init__(
        self, stream: ByteStream, table: CommandTable[C], session: C, idle_timeout: float
    ) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.table = table
        self.session = session
        self.idle_timeout = idle_timeout
        self.active = time.monotonic()  # the end of the last answer
        self.answering = False

    async def run(self) -> None:
        # A watchdog beside the request loop rather than a deadline around every read:
        # a cancel scope with a deadline per request costs ~6 us, a timestamp nothing.
        idled = False
        async with anyio.create_task_group() as tg:

            async def close_when_idle() -> None:
                nonlocal idled
                while True:
                    left = self.active + self.idle_timeout - time.monotonic()
                    if left > 0:
                        await anyio.sleep(left)
                    elif self.answering or self.session.busy:
                        self.active = time.monotonic()
                    else:
                        # Not inside an answer: the request loop waits for a line, and
                        # whatever arrived meanwhile goes unread (the client may resend).
                        idled = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(close_when_idle)
            await self.serve_requests()
            tg.cancel_scope.cancel()
        if idled:
            await self.stream.send(
                encode_error(
                    None,
                    "idle_timeout",
                    f"no request for {self.idle_timeout:g} s; closing (a request sent "
                    "after this line was not read)",
                )
            )

    async def serve_requests(self) -> None:
        while True:
            try:
                line = await self.reader.receive_until(b"\n", MAX_LINE)
            except anyio.DelimiterNotFound:
                await self.stream.send(
                    encode_error(
                        None, "too_large", f"request longer than {MAX_LINE} bytes; closing"
                    )
                )
                await self.linger()
                return
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                return
            if not line.strip():
                continue
            self.answering = True
            try:
                if not await self.answer(line):
                    return
            finally:
                self.answering = False
                self.active = time.monotonic()

    async def linger(self) -> None:
        """Close gently after refusing a line: a socket closed with unread data resets
        the connection, and the client would lose the refusal. So: no more writing, and
        what the client still sends is read and dropped (for a moment, up to a bound)."""
        with anyio.move_on_after(LINGER), contextlib.suppress(Exception):
            await self.stream.send_eof()
            dropped = 0
            while dropped < 4 * MAX_LINE:
                dropped += len(await self.stream.receive())

    async def answer(self, line: bytes) -> bool:
        """Answer one request line; False once the connection is done."""
        rid: Any = None
        try:
            request = decode_request(line)
            rid = request.id
            command, args = self.table.lookup(request)
            if command.spec.streaming:
                await self.stream_events(rid, self.table.stream(self.session, command, args))
                return False
            if command.spec.watch_peer:
                return await self.call_watching_peer(rid, command.handler(self.session, args))
            result = await command.handler(self.session, args)
            await self.stream.send(encode_result(rid, result))
        except ProtocolError as exc:
            await self.stream.send(encode_error(exc.request_id, exc.code, exc.message))
        except HiveError as exc:
            await self.stream.send(encode_error(rid, exc.code, exc.message))
        except GitNoSpaceError as exc:
            await self.stream.send(encode_error(rid, "no_space", str(exc)))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        except _INPUT_ERRORS as exc:
            log.warning("input no check caught: %s: %r", type(exc).__name__, line[:200])
            await self.stream.send(encode_error(rid, "invalid", f"bad input: {exc}"))
        except Exception as exc:
            log.exception("command failed: %r", line[:200])
            await self.stream.send(encode_error(rid, "internal", f"{type(exc).__name__}: {exc}"))
        return True

    async def call_watching_peer(self, rid: Any, call: Awaitable[Any]) -> bool:
        """Await `call` while reading ahead and answer it; if the peer closes, cancel it.

        The answer goes out before the read-ahead is torn down, so a woken `recv` does
        not wait a loop iteration for it. False once the connection is done."""
        gone = False
        refused: HiveError | None = None  # stays None when the peer left mid-call
        async with anyio.create_task_group() as tg:

            async def read_ahead() -> None:
                nonlocal gone
                while len(self.reader.buffer) < MAX_LINE:
                    try:
                        data = await self.stream.receive()
                    except (
                        anyio.EndOfStream,
                        anyio.BrokenResourceError,
                        anyio.ClosedResourceError,
                    ):
                        gone = True
                        tg.cancel_scope.cancel()
                        return
                    self.reader.feed_data(data)
                await anyio.sleep_forever()

            tg.start_soon(read_ahead)
            try:
                result = await call
            except HiveError as exc:
                # Raised out of the task group it would arrive wrapped in an
                # ExceptionGroup, and be answered `internal` instead of its own code.
                refused = exc
            else:
                try:
                    await self.stream.send(encode_result(rid, result))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    gone = True
            tg.cancel_scope.cancel()
        if refused is not None:
            raise refused
        return not gone

    async def stream_events(self, rid: Any, events: Any) -> None:
        """Send events until the client closes (or the stream ends)."""
        async with anyio.create_task_group() as tg:

            async def until_closed() -> None:
                try:
                    while await self.stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_closed)
            try:
                async for event in events:
                    await self.stream.send(encode_event(rid, event))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            tg.cancel_scope.cancel()


async def serve_socket(
    path: Path,
    table: CommandTable[C],
    new_session: Callable[[], C],
    *,
    slots: Slots,
    idle_timeout: float,
    mode: int = 0o600,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `path` (replacing a stale socket) until cancelled, holding at most
    `slots.limit` connections at once (`slots` may be shared by several sockets).

    The socket is bound and listening under a temporary name and then renamed into
    place, so `path` never exists without a listener behind it (a client that sees the
    file can connect) and its mode is right from the first moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    async with await anyio.create_unix_listener(staging) as listener:
        os.chmod(staging, mode)
        os.replace(staging, path)

        async def handle(accepted: ByteStream) -> None:
            try:
                async with accepted, await open_transport_stream(accepted) as stream:
                    session = new_session()
                    try:
                        await _Connection(stream, table, session, idle_timeout).run()
                    finally:
                        with anyio.CancelScope(shield=True):
                            await session.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the peer went away mid-answer: nothing to tell it

        task_status.started()
        try:
            await serve_listener(listener, handle, slots)
        finally:
            path.unlink(missing_ok=True)
