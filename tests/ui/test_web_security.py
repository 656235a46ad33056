"""The guard in front of both apps, attacked as the issue found it: DNS-rebinding Host
names, CSRF tokens the client chose, a chunked body far over the limit, malformed
bodies. Real servers on loopback, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ui.http import action, read_json, text_field
from ui.security import MAX_BODY, Guard, load_secret
from ui.server import serve_app

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


async def _token(request: Request) -> Response:
    return JSONResponse({"csrf": request.state.csrf})


@action
async def _echo(request: Request) -> Response:
    return JSONResponse({"body": text_field(await read_json(request), "body")})


def _app(secret: bytes | None = None, **kw: object) -> Guard:
    app = Starlette(routes=[Route("/", _token), Route("/do", _echo, methods=["POST"])])
    return Guard(app, name="t", secret=secret, **kw)  # type: ignore[arg-type]


async def _served(app: Guard) -> AsyncIterator[str]:
    ports: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: serve_app(
                app, "127.0.0.1", 0, what="test", on_bound=ports.append, task_status=task_status
            )
        )
        yield f"http://127.0.0.1:{ports[0]}"
        tg.cancel_scope.cancel()


async def _raw_get(port: int, host: str) -> int:
    """The status of a GET sent with exactly this Host header (no client rewrites it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_rebinding_host_names_are_refused_and_exact_loopback_names_pass() -> None:
    async for base in _served(_app()):
        port = int(base.rsplit(":", 1)[1])
        for evil in (
            "127.0.0.1.evil.example",
            f"127.0.0.1.evil.example:{port}",
            "127.1.evil.example",
            "localhost.evil.example",
            "[::1].evil.example",
            "evil.example",
            "",
        ):
            assert await _raw_get(port, evil) == 421, evil
        for good in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"localhost:{port}"):
            assert await _raw_get(port, good) == 200, good
        assert await _raw_get(port, f"[::1]:{port}") == 200


async def test_a_guard_on_another_address_also_answers_that_host_name() -> None:
    async for base in _served(_app(hosts=("10.1.2.3",))):
        port = int(base.rsplit(":", 1)[1])
        assert await _raw_get(port, f"10.1.2.3:{port}") == 200
        assert await _raw_get(port, f"10.1.2.3.evil.example:{port}") == 421
        assert await _raw_get(port, "localhost") == 200


async def test_a_csrf_token_the_client_chose_is_refused() -> None:
    async for base in _served(_app()):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            chosen = "A" * 43
            http.cookie_jar.update_cookies({"hive-csrf-t": chosen})
            headers = {"origin": base, "x-csrf-token": chosen}
            async with http.post(base + "/do", headers=headers, json={"body": "hi"}) as resp:
                assert resp.status == 403
                assert "CSRF" in (await resp.json())["error"]
            # the page then hands out a token of the server's own, which works
            async with http.get(base + "/") as resp:
                minted = (await resp.json())["csrf"]
            assert minted != chosen
            headers = {"origin": base, "x-csrf-token": minted}
            async with http.post(base + "/do", headers=headers, json={"body": "hi"}) as resp:
                assert resp.status == 200


async def test_a_csrf_token_signed_with_another_key_is_refused() -> None:
    async for other in _served(_app(secret=b"k" * 32)):
        async with aiohttp.ClientSession() as http, http.get(other + "/") as resp:
            foreign = (await resp.json())["csrf"]
    async for base in _served(_app(secret=b"s" * 32)):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            http.cookie_jar.update_cookies({"hive-csrf-t": foreign})
            headers = {"origin": base, "x-csrf-token": foreign}
            async with http.post(base + "/do", headers=headers, json={"body": "hi"}) as resp:
                assert resp.status == 403


def test_the_signing_secret_is_private_to_the_operator_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "web.secret"
    first = load_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == first  # tokens survive a daemon restart
    path.chmod(0o644)
    assert load_secret(path) != first  # one others could read is never used
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _high_water_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def _chunked_post(port: int, cookie: str, token: str, total: int) -> tuple[int, int]:
    """POST `total` bytes chunked; stop when the server answers. (status, bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /do HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Cookie: hive-csrf-t={cookie}\r\nX-CSRF-Token: {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    chunk = b'{"a": "' + b"x" * (1 << 20)
    sent = 0
    answer = asyncio.ensure_future(reader.readline())
    try:
        while sent < total and not answer.done():
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
        if not answer.done():
            writer.write(b"0\r\n\r\n")
    except ConnectionError:
        pass
    status_line = await asyncio.wait_for(answer, 30)
    writer.close()
    return int(status_line.split()[1]), sent


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.ui.guarded_server"]
    async with await anyio.open_process(command, cwd=REPO, env=env, stderr=None) as proc:
        try:
            assert proc.stdout is not None
            with anyio.fail_after(30):
                line = await BufferedByteReceiveStream(proc.stdout).receive_until(b"\n", 16)
            port = int(line)
            url = f"http://127.0.0.1:{port}/"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                token = (await resp.json())["csrf"]
                cookie = resp.cookies["hive-csrf-t"].value
            before = _high_water_kb(proc.pid)
            status, sent = await _chunked_post(port, cookie, token, 200 << 20)
            grown_mb = (_high_water_kb(proc.pid) - before) / 1024
            print(f"sent {sent >> 20} MB before the answer; server RSS peak grew {grown_mb:.1f} MB")
            assert status == 413
            assert sent < 64 << 20  # refused early, not after the whole body
            assert grown_mb < 32  # the body was never held whole (200 MB)
        finally:
            proc.kill()


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async for base in _served(_app()):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/") as resp:
                token = (await resp.json())["csrf"]
            headers = {"origin": base, "x-csrf-token": token}
            body = b'{"body": "' + b"x" * MAX_BODY + b'"}'
            async with http.post(base + "/do", headers=headers, data=body) as resp:
                assert resp.status == 413
                assert "too large" in (await resp.json())["error"]


async def test_malformed_bodies_are_4xx_with_a_message() -> None:
    nested = b'{"body": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    cases = {
        "nested": nested,
        "surrogate": json.dumps({"body": "\ud800"}).encode(),
        "not utf-8": b'{"body": "\xff\xfe"}',
        "not json": b"{body",
        "not an object": b"[1, 2]",
        "not text": b'{"body": 7}',
    }
    async for base in _served(_app()):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/") as resp:
                token = (await resp.json())["csrf"]
            headers = {"origin": base, "x-csrf-token": token}
            for what, body in cases.items():
                async with http.post(base + "/do", headers=headers, data=body) as resp:
                    assert resp.status == 400, what
                    assert (await resp.json())["error"], what
