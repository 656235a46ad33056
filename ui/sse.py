"""Server-sent events from an in-process bus, batched, on sse-starlette.

sse-starlette's `EventSourceResponse` does the protocol around our stream: a ping
comment every `ping` seconds (its own task, under its send lock, so a ping never splits
a chunk), the client going away, HEAD. We hand it an iterator that drains everything its
subscription holds and writes it as *one* chunk: under a burst, a client costs one write
per wake-up instead of one per event, which is what lets one process fan 1,000 events/s
out to 100 browsers. Each event is encoded once per stream by `encode`, which also
decides what a client may see (None: skip it).

A stream ends when the client goes away, when the bus cuts a subscriber that fell too
far behind (the browser's EventSource reconnects and the page refetches its regions), or
when the server shuts down. Shutdown is the `shutdown` event, given to the library as its
`shutdown_event`: the library sets it when it sees a server exit itself (uvicorn running
with its own signal handlers), and `ui.server.serve_app` sets it when our embedded server
closes (its signals belong to the daemon or the harness, where the library cannot look).
Either way the stream ends cooperatively: a watcher per response (the library's
`data_sender_callable`, one task per connection, nothing per event) cuts the stream's
wait for its next event short, the iterator returns, the response finishes its body, and
uvicorn has no open stream to wait for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import anyio
from sse_starlette.sse import EventSourceResponse

from controller.fanout import Event, Subscription

__all__ = ["PING_SECONDS", "EventSource", "format_event", "sse_response"]

PING_SECONDS = 15.0
COALESCE = 0.005
BUFFER = 5_000
# How long the library waits for a stream to end by itself, once it has seen a server
# exit, before cancelling it; ours end within a loop turn.
GRACE = 1.0


def format_event(kind: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


class _Wait:
    """The stream's wait for its next event, which shutdown may cut short."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None

    def interrupt(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


async def _batches(
    sub: Subscription,
    encode: Callable[[Event], bytes | None],
    shutdown: anyio.Event,
    wait: _Wait,
) -> AsyncIterator[bytes]:
    while not shutdown.is_set():
        event: Event | None = None
        # A scope around the wait only, never around a yield (a cancel scope must not
        # span an async generator's suspension).
        with anyio.CancelScope() as wait.scope:
            try:
                event = await sub.next()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
        wait.scope = None
        if event is None:
            return  # interrupted: the server is shutting down
        # Let a burst gather for a few ms: one write (and one wake-up of each side)
        # carries many events; at 1,000 events/s x 100 clients that is what keeps p99 low.
        await anyio.sleep(COALESCE)
        chunk = bytearray()
        while event is not None:
            encoded = encode(event)
            if encoded:
                chunk += encoded
            try:
                event = sub.next_nowait()
            except anyio.WouldBlock:
                event = None
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if chunk:
                    yield bytes(chunk)
                return
        if chunk:
            yield bytes(chunk)


class EventSource(Protocol):
    """What a stream reads: the hive's events (through its operations) or an agent's
    live fan-out."""

    def subscribe(self, buffer: int = ...) -> AbstractContextManager[Subscription]: ...


def sse_response(
    bus: EventSource,
    encode: Callable[[Event], bytes | None],
    *,
    shutdown: anyio.Event,
    ping: float = PING_SECONDS,
    first: Callable[[], Awaitable[bytes]] | None = None,
    buffer: int = BUFFER,
) -> EventSourceResponse:
    """A stream of `bus`'s events, encoded by `encode`, until shutdown or a cut.

    The subscription opens when the response starts, *before* `first()` builds the
    opening chunk (a greeting, a backfill), so nothing published meanwhile is lost."""
    wait = _Wait()

    async def chunks() -> AsyncIterator[bytes]:
        with bus.subscribe(buffer=buffer) as sub:
            if first is not None:
                head = await first()
                if head:
                    yield head
            async for chunk in _batches(sub, encode, shutdown, wait):
                yield chunk

    async def end_on_shutdown() -> None:
        await shutdown.wait()
        wait.interrupt()

    return EventSourceResponse(
        chunks(),
        ping=ping,
        sep="\n",
        shutdown_event=shutdown,
        shutdown_grace_period=GRACE,
        data_sender_callable=end_on_shutdown,
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
