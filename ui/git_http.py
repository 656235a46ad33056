"""Git over HTTP on the dashboard's server: git's own smart HTTP backend, behind a token.

`/git/proposed.git` (clone, fetch, push) and `/git/applied.git` (clone and fetch only)
are served by running `git http-backend` as a CGI program per request, with the request
body streamed into it and its answer streamed back: git does the protocol, we do the
door. Every request needs HTTP basic auth with any user name and a token as the
password (`hive token create`, or in a cluster the manager's ServiceAccount token: the
`authenticate` callable decides); a missing or wrong token is 401 with a
`WWW-Authenticate` challenge, so git asks its credential helper. Only the smart
protocol's three endpoints exist (`info/refs`, `git-upload-pack`, `git-receive-pack`),
so nothing else under the state dir is reachable. A push to `applied.git` is 403 before
git runs (its pre-receive hook would refuse it too): only hive-c0re writes applied
`main`.

A push lands in `proposed.git` exactly as a local `git push` does, so the ref watcher
sees it the same moment (inotify on `refs/`) and the approval appears as fast.

Limits: a request body over `max_body` bytes is refused (413 when declared, the
connection cut when a chunked body passes it), at most `max_running` backends run at
once (503 beyond, git retries), and a backend that runs longer than `deadline` seconds
is killed.

This app sits in front of the dashboard's guard (`mount_git`): git clients send no CSRF
token and push bodies far over the guard's JSON limit, and their authority is the token,
which a DNS-rebinding page cannot know.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import PIPE

import anyio
from anyio.abc import ByteReceiveStream, Process
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PREFIX", "GitHttp", "mount_git"]

log = logging.getLogger(__name__)

PREFIX = "/git/"
WRITABLE = {"proposed.git": True, "applied.git": False}
_PATH = re.compile(
    r"^/git/(proposed\.git|applied\.git)/(info/refs|git-upload-pack|git-receive-pack)$"
)
_SERVICES = frozenset({"git-upload-pack", "git-receive-pack"})
MAX_HEADER = 64 * 1024
MAX_STDERR = 16 * 1024

Authenticate = Callable[[str], Awaitable[str | None]]


def _password(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 8192:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


class _TooLarge(Exception):
    """Raised when a chunked request body passes the limit while it streams in."""


class GitHttp:
    def __init__(
        self,
        root: Path,
        authenticate: Authenticate,
        *,
        max_body: int = 256 * 1024 * 1024,
        max_running: int = 8,
        deadline: float = 600.0,
        git: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.authenticate = authenticate
        self.max_body = max_body
        self.deadline = deadline
        self.git = git or shutil.which("git") or "git"
        self.environ = dict(os.environ if environ is None else environ)
        self._running = anyio.CapacityLimiter(max_running)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        match = _PATH.match(scope["path"])
        headers = Headers(scope=scope)
        if match is None:
            await _text(404, "no such git endpoint: use /git/proposed.git or /git/applied.git")(
                scope, receive, send
            )
            return
        repo, tail = match.groups()
        query = scope.get("query_string", b"").decode("latin-1")
        service = tail if tail != "info/refs" else _service(query)
        method = scope["method"]
        if service is None or (tail == "info/refs") != (method in ("GET", "HEAD")):
            await _text(400, "only git's smart HTTP protocol is served here")(scope, receive, send)
            return
        password = _password(headers)
        who = await self.authenticate(password) if password is not None else None
        if who is None:
            response = _text(
                401,
                "a token is needed: hive token create, then use it as the password (any user name)",
            )
            response.headers["www-authenticate"] = 'Basic realm="hyperhive git", charset="UTF-8"'
            await response(scope, receive, send)
            return
        if service == "git-receive-pack" and not WRITABLE[repo]:
            await _text(403, f"{repo} is read-only: push to /git/proposed.git")(
                scope, receive, send
            )
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _text(413, f"request body over {self.max_body} bytes")(scope, receive, send)
            return
        try:
            self._running.acquire_nowait()
        except anyio.WouldBlock:
            await _text(503, "too many git requests at once; retry")(scope, receive, send)
            return
        try:
            env = self._env(scope, headers, repo, tail, query, who, length)
            await self._run(env, receive, send)
        finally:
            self._running.release()

    def _env(
        self,
        scope: Scope,
        headers: Headers,
        repo: str,
        tail: str,
        query: str,
        who: str,
        length: str | None,
    ) -> dict[str, str]:
        client = scope.get("client") or ("", 0)
        env = {k: v for k, v in self.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        env.update(
            {
                "GIT_PROJECT_ROOT": str(self.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": str(self.root),
                "PATH_INFO": f"/{repo}/{tail}",
                "REQUEST_METHOD": scope["method"],
                "QUERY_STRING": query,
                "CONTENT_TYPE": headers.get("content-type", ""),
                "REMOTE_USER": who,
                "REMOTE_ADDR": str(client[0]),
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
            }
        )
        if length is not None:
            env["CONTENT_LENGTH"] = length
        for header, var in (
            ("git-protocol", "GIT_PROTOCOL"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ):
            if header in headers:
                env[var] = headers[header]
        return env

    async def _run(self, env: dict[str, str], receive: Receive, send: Send) -> None:
        started = False
        problem: tuple[int, str] | None = None
        with anyio.move_on_after(self.deadline) as deadline:
            async with await anyio.open_process(
                [self.git, "http-backend"], env=env, stdin=PIPE, stdout=PIPE, stderr=PIPE
            ) as proc:
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._feed, proc, receive)
                        tg.start_soon(_log_stderr, proc)
                        assert proc.stdout is not None
                        status, head, rest = await _read_head(proc.stdout)
                        await send(
                            {"type": "http.response.start", "status": status, "headers": head}
                        )
                        started = True
                        if rest:
                            await _body(send, rest)
                        async for chunk in proc.stdout:
                            await _body(send, chunk)
                        await send({"type": "http.response.body", "body": b""})
                except* _TooLarge:
                    problem = (413, f"request body over {self.max_body} bytes")
                except* _BadHead as group:
                    log.error("git http-backend: %s", group.exceptions[0])
                    problem = (502, "git http-backend failed; see hive-c0re's log")
                finally:
                    _kill(proc)
        if deadline.cancelled_caught:
            log.warning("git http-backend ran over %.0f s; killed", self.deadline)
            problem = (504, "git took too long")
        if problem is not None and not started:
            await _send_text(send, *problem)

    async def _feed(self, proc: Process, receive: Receive) -> None:
        assert proc.stdin is not None
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    _kill(proc)  # the client went away
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise _TooLarge()
                if chunk:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await proc.stdin.send(chunk)
                if not message.get("more_body", False):
                    return
        finally:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await proc.stdin.aclose()


class _BadHead(Exception):
    """Raised when git http-backend's output does not start with CGI headers."""


def _service(query: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "service" and value in _SERVICES:
            return value
    return None


async def _read_head(stdout: ByteReceiveStream) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The CGI header block of `stdout` -> (status, headers, body bytes read past it)."""
    buffer = b""
    while True:
        for sep in (b"\r\n\r\n", b"\n\n"):
            end = buffer.find(sep)
            if end >= 0:
                return (*_parse_head(buffer[:end]), buffer[end + len(sep) :])
        if len(buffer) > MAX_HEADER:
            raise _BadHead("header block too long")
        try:
            buffer += await stdout.receive()
        except anyio.EndOfStream:
            raise _BadHead(f"no header block in {buffer[:200]!r}") from None


def _parse_head(block: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadHead(f"not a header line: {line[:200]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == b"status":
            code = value.split(b" ", 1)[0]
            if not code.isdigit():
                raise _BadHead(f"bad status {value[:50]!r}")
            status = int(code)
        else:
            headers.append((name, value))
    return status, headers


async def _log_stderr(proc: Process) -> None:
    assert proc.stderr is not None
    seen = b""
    async for chunk in proc.stderr:
        if len(seen) < MAX_STDERR:
            seen += chunk[: MAX_STDERR - len(seen)]
    if seen.strip():
        log.warning("git http-backend: %s", seen.decode("utf-8", "replace").strip())


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _kill(proc: Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status)


async def _send_text(send: Send, status: int, message: str) -> None:
    body = (message + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def mount_git(app: ASGIApp, git: ASGIApp) -> ASGIApp:
    """`app`, with every path under `/git/` answered by `git` instead."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await git(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch
