"""Templates on Starlette's Jinja2Templates: the context processor, escaping, filters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import anyio
import jinja2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ui.security import Guard
from ui.server import serve_app
from ui.templating import NO_STORE, create_templates, environment

templates = create_templates()


async def _login(request: Request) -> Response:
    context = {"name": request.query_params["name"], "kind": None, "stored": ""}
    return templates.TemplateResponse(request, "login.html", context, headers=NO_STORE)


async def _do(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _served() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/login", _login), Route("/do", _do, methods=["POST"])])
    ports: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                Guard(app, name="tt"),
                "127.0.0.1",
                0,
                what="templating-test",
                on_bound=ports.append,
                task_status=task_status,
            )
        )
        yield f"http://127.0.0.1:{ports[0]}"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_page_carries_the_guards_csrf_token_from_the_context_processor() -> None:
    async for base in _served():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/login", params={"name": "<b>eve</b>"}) as resp:
                assert resp.status == 200
                assert resp.headers["cache-control"] == "no-store"
                html = await resp.text()
            found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
            assert found is not None
            token = found.group(1)
            assert token == resp.cookies["hive-csrf-tt"].value
            assert "&lt;b&gt;eve&lt;/b&gt;" in html and "<b>eve</b>" not in html
            # the token the page was rendered with is the one the guard accepts
            headers = {"origin": base, "x-csrf-token": token}
            async with http.post(base + "/do", headers=headers) as resp:
                assert resp.status == 200


def test_the_environment_keeps_our_filters_and_refuses_undefined_names() -> None:
    env = environment()
    now = datetime.now(UTC)
    page = env.from_string(
        "{{ sha|short }} {{ ms|duration }} {{ when|age }} <p data-x='{{ v|jsonattr }}'>"
    )
    rendered = page.render(
        sha="0123456789abcdef", ms=1500, when=now.timestamp() - 190, v={"a": "<'>"}
    )
    assert rendered.startswith("0123456789 1.5 s 3m ")
    assert "&lt;&#39;&gt;" in rendered  # jsonattr's output is still escaped in a page
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    assert "url_for" in templates.env.globals  # Starlette's own helper, beside ours
