"""A guarded echo app in a process of its own, so a test can read *its* memory.

`python -m tests.ui.guarded_server` serves `Guard` over a route that reads a JSON body
the way every action does (`ui.http.read_json`), and `/` that hands out a CSRF token, on
a free loopback port; it prints the port and runs until killed."""

from __future__ import annotations

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ui.http import action, read_json
from ui.security import Guard
from ui.server import serve_app


@action
async def echo(request: Request) -> Response:
    data = await read_json(request)
    return JSONResponse({"keys": sorted(data)})


async def token(request: Request) -> Response:
    return JSONResponse({"csrf": request.state.csrf})


async def main() -> None:
    routes = [Route("/", token), Route("/do", echo, methods=["POST"])]
    app = Guard(Starlette(routes=routes), name="t")
    await serve_app(app, "127.0.0.1", 0, what="guarded", on_bound=lambda p: print(p, flush=True))


if __name__ == "__main__":
    anyio.run(main)
