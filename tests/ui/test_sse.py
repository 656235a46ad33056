"""The SSE stream on sse-starlette: pings, batching, cuts and shutdown, on a real server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import cast

import aiohttp
import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.fanout import Event, Fanout
from ui.server import serve_app
from ui.sse import format_event, sse_response


def _encode(event: Event) -> bytes | None:
    if event.data.get("hidden"):
        return None
    return format_event(event.type, event.data, event.id)


async def _hello() -> bytes:
    return format_event("hello", {})


def _app(bus: Fanout[str], closing: anyio.Event, ping: float) -> Starlette:
    async def events(request: Request) -> Response:
        return sse_response(bus, _encode, shutdown=closing, ping=ping, first=_hello)

    return Starlette(routes=[Route("/events", events)])


class _Served:
    def __init__(self, bus: Fanout[str], closing: anyio.Event, ping: float) -> None:
        self.app = _app(bus, closing, ping)
        self.closing = closing
        self.ports: list[int] = []

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await serve_app(
            self.app,
            "127.0.0.1",
            0,
            what="sse-test",
            closing=self.closing,
            on_bound=self.ports.append,
            grace=5,
            task_status=task_status,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}/events"


@pytest.fixture
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at ERROR ("returned without completing response", "Cancel N
    running task(s)"): its loggers do not propagate to pytest's capture."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _iterate(bus: Fanout[str], *, buffer: int = 1000) -> AsyncIterator[bytes]:
    response = sse_response(bus, _encode, shutdown=anyio.Event(), buffer=buffer)
    return cast(AsyncIterator[bytes], response.body_iterator)


@pytest.mark.anyio
async def test_an_idle_stream_pings_on_the_configured_interval() -> None:
    bus, closing = Fanout[str](), anyio.Event()
    served = _Served(bus, closing, ping=0.05)
    async with anyio.create_task_group() as tg, aiohttp.ClientSession() as http:
        await tg.start(served.serve)
        pings = 0
        with anyio.fail_after(5):
            async with http.get(served.url) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                assert resp.headers["cache-control"] == "no-store"
                async for line in resp.content:
                    pings += line.startswith(b": ping")
                    if pings == 3:
                        break
        assert pings == 3  # and no event was ever published
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_burst_reaches_a_stream_as_one_chunk_with_skipped_events_left_out() -> None:
    bus = Fanout[str]()
    chunks = _iterate(bus)
    got: list[bytes] = []

    async def read_one() -> None:
        got.append(await anext(chunks))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_one)
        with anyio.fail_after(5):
            while bus.subscriber_count == 0:
                await anyio.sleep(0.001)
        for n in range(200):
            bus.publish("tick", n=n, hidden=n % 2 == 1)
    await chunks.aclose()  # type: ignore[attr-defined]
    assert len(got) == 1
    assert got[0].count(b"event: tick") == 100
    assert b'"n":198' in got[0] and b'"n":199' not in got[0]


@pytest.mark.anyio
async def test_a_stream_the_bus_cuts_for_falling_behind_ends_after_what_it_held() -> None:
    bus = Fanout[str]()
    chunks = _iterate(bus, buffer=10)
    got: list[bytes] = []

    async def read_all() -> None:
        async for chunk in chunks:
            got.append(chunk)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_all)
            while bus.subscriber_count == 0:
                await anyio.sleep(0.001)
            for n in range(25):
                bus.publish("tick", n=n)
            assert bus.subscriber_count == 0  # cut off
    # the event its wait took, then the 10 its buffer held; then the stream ended
    assert len(got) == 1 and got[0].count(b"event: tick") == 11
    assert b'"n":10}' in got[0] and b'"n":11}' not in got[0]


@pytest.mark.anyio
async def test_shutdown_ends_open_streams_at_once_and_the_server_stops_promptly(
    uvicorn_errors: list[logging.LogRecord],
) -> None:
    bus, closing = Fanout[str](), anyio.Event()
    served = _Served(bus, closing, ping=60)
    server = anyio.CancelScope()
    stopped: list[float] = []

    async def run_server(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with server:
            await served.serve(task_status=task_status)
        stopped.append(time.monotonic())

    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(run_server)
            async with http.get(served.url) as resp:
                assert b"event: hello" in await resp.content.readuntil(b"\n\n")
                bus.publish("tick", n=1)
                assert b"event: tick" in await resp.content.readuntil(b"\n\n")
                started = time.monotonic()
                server.cancel()  # what the daemon's (or the harness's) shutdown does
                # A stream cut instead of ended would raise ClientPayloadError here (its
                # chunked body incomplete).
                assert await resp.content.read() == b""
                ended = time.monotonic() - started
            while not stopped:
                await anyio.sleep(0.01)
    assert closing.is_set()
    assert ended < 0.5, ended  # neither a poll nor uvicorn's 5 s grace
    assert stopped[0] - started < 2.0, stopped[0] - started
    assert bus.subscriber_count == 0
    assert [r.getMessage() for r in uvicorn_errors] == []  # ended, not cancelled
