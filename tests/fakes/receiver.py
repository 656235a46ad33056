"""A notification provider on loopback: a real HTTP server (aiohttp.web) that records
what it is sent, and can fail on purpose (answer 500 a few times, or never answer)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from aiohttp import web

__all__ = ["Received", "Receiver", "serve_receiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests first
    hang: bool = False  # never answer
    tries: int = 0
    arrived: anyio.Event = field(default_factory=anyio.Event)

    async def wait(self, n: int = 1) -> list[Received]:
        while len(self.received) < n:
            await self.arrived.wait()
        return self.received


@asynccontextmanager
async def serve_receiver(**behaviour: object) -> AsyncIterator[Receiver]:
    receiver = Receiver("", **behaviour)  # type: ignore[arg-type]

    async def handle(request: web.Request) -> web.Response:
        receiver.tries += 1
        body = await request.read()
        if receiver.hang:
            await anyio.sleep_forever()
        if receiver.tries <= receiver.fail_first:
            return web.Response(status=500, text="down for a moment")
        receiver.received.append(Received(request.path, dict(request.headers), body))
        receiver.arrived.set()
        receiver.arrived = anyio.Event()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()
