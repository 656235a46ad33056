"""Agent pages behind the dashboard: `/agents/<name>/...` proxied to the harness's page.

Each harness serves its page on a unix socket in its agent dir that no sandbox binds
(`Layout.page_socket`), so the dashboard is the only way in: one origin, one login, one
CSRF scheme (the dashboard's `Guard` checked the request before it got here). Responses
stream through as they come (the live tail is SSE; nothing is buffered whole), with the
dashboard's CSRF token handed over in `x-hive-csrf` for the page to render.

The prompt's messages never reach the harness: `POST /agents/<name>/api/send` is handled
here, as the operator's `send` (sender `operator` comes only from the operator's
surfaces); only slash commands (`/clear`, `/model ...`) go on to the page's `/api/slash`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from controller.broker import OPERATOR
from controller.operations import Operations
from gitstore.spec import InvalidNameError, check_name
from ui import slash
from ui.http import action, read_json, text_field

__all__ = ["AgentProxy"]

log = logging.getLogger(__name__)

# What a page's request may tell the harness, and what of its answer the browser sees.
_REQUEST_HEADERS = ("accept", "content-type", "last-event-id")
_RESPONSE_HEADERS = ("content-type", "cache-control", "last-modified", "etag")
CONNECT_SECONDS = 5.0


class AgentProxy:
    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def _socket(self, name: str) -> Path | None:
        try:
            return self.ops.hive.layout.page_socket(check_name(name))
        except InvalidNameError:
            return None

    async def root(self, request: Request) -> Response:
        return RedirectResponse(f"/agents/{request.path_params['name']}/", 307)

    @action
    async def send(self, request: Request) -> Response:
        """The page's prompt: a message goes to the agent's inbox as the operator."""
        name = request.path_params["name"]
        text = text_field(await read_json(request), "body")
        if slash.parse(text) is not None:
            return await self._forward(request, name, "api/slash", {"body": text})
        sent = await self.ops.send(OPERATOR, name, slash.message_text(text))
        return JSONResponse({"ok": True, "id": sent.id})

    async def page(self, request: Request) -> Response:
        return await self._forward(
            request, request.path_params["name"], request.path_params["path"]
        )

    async def _forward(
        self, request: Request, name: str, path: str, json: object | None = None
    ) -> Response:
        where = self._socket(name)
        if where is None or name not in await self.ops.agent_names():
            return PlainTextResponse(f"no agent named {name!r}", 404)
        headers = {k: v for k in _REQUEST_HEADERS if (v := request.headers.get(k))}
        headers["x-hive-csrf"] = getattr(request.state, "csrf", "")
        url = f"http://{name}/{path}"
        if request.url.query:
            url += "?" + request.url.query
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS)
        http = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(where)), timeout=timeout, auto_decompress=False
        )
        try:
            if json is not None:
                upstream = await http.post(url, json=json, headers=headers)
            else:
                body = await request.body()  # the guard has read and capped it already
                upstream = await http.request(
                    request.method, url, data=body or None, headers=headers, allow_redirects=False
                )
        except (aiohttp.ClientError, OSError) as exc:
            await http.close()
            log.info("agent page of %s unreachable: %s", name, exc)
            return PlainTextResponse(
                f"the page of {name} is not reachable (is it running?): {exc}", 502
            )
        except BaseException:
            # Cancelled (the browser left mid-request): the session must not leak.
            with anyio.CancelScope(shield=True):
                await http.close()
            raise

        async def done() -> None:
            upstream.release()
            await http.close()

        async def body_chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            finally:
                with anyio.CancelScope(shield=True):
                    await done()

        shown = {k: v for k in _RESPONSE_HEADERS if (v := upstream.headers.get(k))}
        return StreamingResponse(
            body_chunks(), upstream.status, headers=shown, background=BackgroundTask(done)
        )
