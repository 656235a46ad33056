"""Server-sent events from an in-process bus, batched.

A stream drains everything its subscription holds and writes it as *one* chunk: under a
burst, a client costs one write per wake-up instead of one per event, which is what lets
one process fan 1,000 events/s out to 100 browsers. Each event is encoded once per
stream by `encode`, which also decides what a client may see (None: skip it).

A stream ends when the client goes away, when the bus cuts a subscriber that fell too
far behind (the browser's EventSource reconnects and the page refetches its regions), or
when the server is closing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette.sse import EventSourceResponse

from controller.bus import Event, Subscription

__all__ = ["bus_stream", "format_event", "sse_response"]

PING_SECONDS = 15.0
CLOSING_POLL = 1.0
COALESCE = 0.005


def format_event(kind: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


async def bus_stream(
    sub: Subscription,
    encode: Callable[[Event], bytes | None],
    closing: anyio.Event,
    first: bytes = b"",
) -> AsyncIterator[bytes]:
    """Chunks of encoded events until the subscription ends or the server closes."""
    if first:
        yield first
    idle = 0.0
    while not closing.is_set():
        event: Event | None = None
        # A short timer instead of a watcher task per stream: `closing` is noticed within
        # a second, and the hot path (an event is there) costs no task at all.
        with anyio.move_on_after(CLOSING_POLL):
            try:
                event = await sub.next()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
        if event is None:
            idle += CLOSING_POLL
            if idle >= PING_SECONDS and not closing.is_set():
                idle = 0.0
                yield b": ping\n\n"
            continue
        idle = 0.0
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


def sse_response(chunks: AsyncIterator[bytes]) -> EventSourceResponse:
    # bus_stream pings by itself; sse-starlette's own pinger is pushed out of the way.
    return EventSourceResponse(
        chunks,
        ping=3600,
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
