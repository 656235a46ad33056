"""The dashboard over plain HTTP (no browser): what the page hands its script, and how its
routes take ids and numbers. The hive runs in-process with the sleeper harness."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from controller.events import EventType
from controller.hive import Hive
from tests.helpers import hive_settings, running_hive
from ui.templating import STATIC_DIR

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dashboard(short_dir: Path) -> AsyncIterator[tuple[Hive, str]]:
    settings = hive_settings(short_dir, dashboard_enabled=True, dashboard="127.0.0.1:0")
    async with running_hive(settings) as hive:
        assert hive.dashboard_port is not None
        yield hive, f"http://127.0.0.1:{hive.dashboard_port}"


async def _page(http: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, str]]:
    """The page's HTML and the headers an action needs (its origin and CSRF token)."""
    async with http.get(url) as resp:
        assert resp.status == 200
        html = await resp.text()
    token = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert token is not None
    base = url.split("/", 3)
    return html, {"origin": "/".join(base[:3]), "x-csrf-token": token.group(1)}


def _event_data(html: str) -> dict[str, dict[str, object]]:
    found = re.search(r'<script type="application/json" id="hive-events">(.*?)</script>', html)
    assert found is not None, "the page carries no event types"
    data: dict[str, dict[str, object]] = json.loads(found.group(1))
    return data


async def test_every_page_hands_the_script_the_event_types_and_the_script_has_no_copy(
    dashboard: tuple[Hive, str],
) -> None:
    _, base = dashboard
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for path in ("/", "/reconcile", "/logs"):
            html, _ = await _page(http, base + path)
            data = _event_data(html)
            assert data["types"] == {t.name: t.value for t in EventType}
            touches = data["touches"]
            assert set(touches) == {t.value for t in EventType}
            assert touches["approval.created"] == ["approvals", "notify"]
            assert touches["agent.kill"] == ["agents", "notify", "reconcile"]
            hello = touches["hello"]
            assert isinstance(hello, list) and {"agents", "approvals", "messages"} <= set(hello)
    script = (STATIC_DIR / "dashboard.js").read_text()
    copies = [t.value for t in EventType if f'"{t.value}"' in script or f"'{t.value}'" in script]
    assert copies == []


async def test_dashboard_ids_are_route_converted_and_numbers_checked(
    dashboard: tuple[Hive, str],
) -> None:
    _, base = dashboard
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        _, headers = await _page(http, base + "/")
        async with http.post(base + "/api/approvals/seven/approve", headers=headers) as resp:
            assert resp.status == 404  # no such route: the id is not a number
        async with http.post(base + "/api/approvals/4711/approve", headers=headers) as resp:
            assert resp.status == 404
            assert "no approval #4711" in (await resp.json())["error"]
        async with http.post(
            base + "/api/questions/12/answer", headers=headers, json={"answer": "yes"}
        ) as resp:
            assert resp.status == 404
            assert "no question #12" in (await resp.json())["error"]
        async with http.get(base + "/api/logs/hm1nd?lines=many") as resp:
            assert resp.status == 400
            assert "lines must be a whole number" in (await resp.json())["error"]
        async with http.get(base + "/api/logs/hm1nd?lines=999999") as resp:
            assert resp.status == 200
            assert isinstance((await resp.json())["lines"], list)


async def test_malformed_bodies_and_queries_are_4xx_with_a_message_never_a_500(
    dashboard: tuple[Hive, str],
) -> None:
    _, base = dashboard
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        _, headers = await _page(http, base + "/")
        bodies = [
            b'{"to": "hm1nd", "body": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
            json.dumps({"to": "hm1nd", "body": "hi \ud800"}).encode(),
            json.dumps({"to": "hm1\udfffnd", "body": "hi"}).encode(),
        ]
        for body in bodies:
            async with http.post(base + "/api/send", headers=headers, data=body) as resp:
                assert resp.status == 400, body[:40]
                assert (await resp.json())["error"]
        answer = json.dumps({"answer": ["\ud800"]}).encode()
        url = base + "/api/questions/1/answer"
        async with http.post(url, headers=headers, data=answer) as resp:
            assert resp.status == 400
        for lines in ("-1", "²", "9" * 5000, "1e3", "0x10"):
            async with http.get(base + f"/api/logs/hm1nd?lines={lines}") as resp:
                assert resp.status == 400, lines
                assert "lines must be a whole number" in (await resp.json())["error"]
        huge = "9" * 30
        async with http.post(base + f"/api/approvals/{huge}/approve", headers=headers) as resp:
            assert 400 <= resp.status < 500
            assert (await resp.json())["error"]


async def test_agent_pages_live_behind_the_dashboard_and_its_guard(
    dashboard: tuple[Hive, str],
) -> None:
    hive, base = dashboard
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        html, headers = await _page(http, base + "/")
        assert 'href="/agents/hm1nd/"' in html
        assert "127.0.0.1:8" not in html  # no hashed TCP port anywhere
        async with http.get(base + "/agents/hm1nd", allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["location"] == "/agents/hm1nd/"
        async with http.get(base + "/agents/nobody/") as resp:
            assert resp.status == 404
        async with http.get(base + "/agents/..%2F..%2Fhost/") as resp:
            assert resp.status == 404
        # The prompt is the operator's send, through the dashboard's CSRF check.
        body = {"body": "from the page"}
        async with http.post(base + "/agents/hm1nd/api/send", json=body) as resp:
            assert resp.status == 403
        async with http.post(base + "/agents/hm1nd/api/send", headers=headers, json=body) as resp:
            assert resp.status == 200, await resp.text()
        (sent,) = [m for m in await hive.broker.messages("hm1nd") if m.body == "from the page"]
        assert (sent.sender, sent.recipient) == ("operator", "hm1nd")
