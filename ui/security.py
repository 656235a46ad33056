"""The guard in front of every operator page: host pinning, body limits, login, CSRF.

One pure-ASGI middleware, so no route can forget it:
- **Host pinning.** A server bound to loopback answers only requests whose `Host` is
  exactly `127.0.0.1`, `localhost` or `[::1]` (with an optional port), or the address it
  was bound to: a DNS-rebinding page on `evil.example` or `127.0.0.1.evil.example` that
  resolves to 127.0.0.1 gets 421, so it is never same-origin with us.
- **Bodies capped while streaming.** A declared `Content-Length` over the limit is 413
  before a byte is read; a chunked body is read into a bounded buffer and refused the
  moment it passes the limit (uvicorn then closes the connection), so no request makes
  the server hold more than `max_body` bytes of it.
- **Optional token.** When a token is configured (`HIVE_DASHBOARD_TOKEN`; agent pages
  are served behind the dashboard, so it covers them too) every request needs it, as
  `Authorization: Bearer` or as the cookie `/auth` sets (an HMAC of the token, never
  the token itself).
- **A scraper's token.** `/metrics` takes, besides the above, its own bearer token
  (`HIVE_METRICS_TOKEN`) when one is set, and then requires it: a Prometheus server
  holds a token that reads the metrics and nothing else.
- **CSRF.** State changes are POSTs, and a POST passes only when it is same-origin (its
  `Origin`, else `Referer`, names the very host it was sent to) *and* carries a token
  the server minted: `<nonce>.<HMAC(secret, app name + nonce)>`, in the SameSite=Strict
  cookie the pages set and, equal to it, in the `X-CSRF-Token` header. A cookie the
  client chose (or one signed with another key) does not verify and is replaced by a
  fresh one. The secret is per daemon, kept 0600 in the state dir (`load_secret`).

Cookies are not isolated by port, so their names carry the app's name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.settings import is_loopback

__all__ = [
    "CSRF_HEADER",
    "MAX_BODY",
    "Guard",
    "host_names",
    "is_loopback",
    "load_secret",
    "same_origin",
    "session_value",
]

log = logging.getLogger(__name__)

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
MAX_BODY = 512 * 1024
METRICS_PATH = "/metrics"
SECRET_BYTES = 32
# host[:port], host a name or a bracketed IPv6 literal; anything else is not a Host.
_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?$")


def host_names(bind_host: str) -> frozenset[str]:
    """The Host names a server bound to `bind_host` answers: the loopback names, and
    the bound address itself when it is a specific one (not a wildcard)."""
    names = set(LOOPBACK_NAMES)
    bare = bind_host.strip("[]").lower()
    if bare and bare not in ("0.0.0.0", "::"):
        names.add(f"[{bare}]" if ":" in bare else bare)
    return frozenset(names)


def _hostname(host_header: str) -> str | None:
    """The name part of a Host header, or None when it is not one."""
    found = _HOST.match(host_header.lower())
    return found.group(1) if found else None


def load_secret(path: Path) -> bytes:
    """The daemon's signing secret, kept 0600 at `path` (made on first use; one that
    others could read is replaced, which only makes open pages fetch a fresh token)."""
    try:
        info = path.stat()
        if info.st_mode & 0o077 == 0 and info.st_size >= SECRET_BYTES:
            return path.read_bytes()
        log.warning("%s is readable by others or short; making a new one", path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_bytes(SECRET_BYTES)
    staging = path.with_name(path.name + ".new")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, fresh)
    finally:
        os.close(fd)
    os.replace(staging, path)
    return fresh


def same_origin(headers: Headers) -> bool:
    """Whether the request's Origin (else Referer) names the host it was sent to.

    Only host and port are compared: behind a TLS proxy the scheme we see differs from
    the browser's, and host:port is what tells one site from another here.
    """
    host = headers.get("host", "").lower()
    source = headers.get("origin") or headers.get("referer")
    if not host or not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == host


def session_value(token: str) -> str:
    """What the auth cookie holds: derived from the token, useless as a token itself."""
    return hmac.new(token.encode(), b"hyperhive-session", hashlib.sha256).hexdigest()


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is the client's problem: no cookies
        return {}
    return {k: v.value for k, v in jar.items()}


def _wants_json(headers: Headers) -> bool:
    return "text/html" not in headers.get("accept", "")


class Guard:
    """Wraps a Starlette app; `name` keeps its cookies apart from other apps' on the host."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str,
        token: str | None = None,
        loopback: bool = True,
        hosts: Iterable[str] = (),
        secret: bytes | None = None,
        max_body: int = MAX_BODY,
        metrics_token: str | None = None,
    ) -> None:
        """`loopback`: pin Host to the loopback names and `hosts`; `secret` signs CSRF
        tokens (a random one per process when not given)."""
        self.app = app
        self.token = token or None
        self.loopback = loopback
        self.hosts = LOOPBACK_NAMES | {h.lower() for h in hosts}
        self.secret = secret or secrets.token_bytes(SECRET_BYTES)
        self.max_body = max_body
        self.metrics_token = metrics_token or None
        self.name = name
        self.csrf_cookie = f"hive-csrf-{name}"
        self.auth_cookie = f"hive-auth-{name}"

    def mint(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def verifies(self, token: str) -> bool:
        nonce, _, signature = token.partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def _sign(self, nonce: str) -> str:
        message = f"hyperhive-csrf:{self.name}:{nonce}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.loopback and _hostname(headers.get("host", "")) not in self.hosts:
            await PlainTextResponse("unexpected Host header", 421)(scope, receive, send)
            return
        if _has_body(headers):
            body = await self._read_body(headers, receive)
            if body is None:
                message = f"body too large (limit {self.max_body} bytes)"
                await _refuse(headers, 413, message)(scope, receive, send)
                return
            receive = _replay(body, receive)
        cookies = _cookies(headers)
        method = scope["method"]
        if self.token is not None and scope["path"] == "/auth":
            await self._auth(scope, receive, send, headers)
            return
        public = scope["path"].startswith("/static/")  # assets hold no secrets
        if scope["path"] == METRICS_PATH and self.metrics_token is not None:
            if not self._scraper(headers) and (
                self.token is None or not self._authorised(headers, cookies)
            ):
                await _refuse(headers, 401, "a bearer token is required")(scope, receive, send)
                return
            public = True
        if self.token is not None and not public and not self._authorised(headers, cookies):
            await self._refuse_auth(headers)(scope, receive, send)
            return
        if method not in SAFE_METHODS:
            problem = self._csrf_problem(headers, cookies)
            if problem:
                await _refuse(headers, 403, problem)(scope, receive, send)
                return
        token = cookies.get(self.csrf_cookie) or ""
        fresh = not self.verifies(token)
        if fresh:
            token = self.mint()
        scope.setdefault("state", {})["csrf"] = token
        scope["state"]["auth_cookie"] = self.auth_cookie
        scope["state"]["auth_token"] = self.token

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                cookie = f"{self.csrf_cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message["headers"], _header(cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _scraper(self, headers: Headers) -> bool:
        assert self.metrics_token is not None
        bearer = headers.get("authorization", "")
        return bearer.startswith("Bearer ") and hmac.compare_digest(
            bearer[7:].encode(), self.metrics_token.encode()
        )

    def _authorised(self, headers: Headers, cookies: dict[str, str]) -> bool:
        assert self.token is not None
        bearer = headers.get("authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:], self.token):
            return True
        got = cookies.get(self.auth_cookie, "")
        return hmac.compare_digest(got, session_value(self.token))

    async def _auth(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        """GET: the token form; POST (same-origin): check the token, set the cookie."""
        assert self.token is not None
        response: Response
        if scope["method"] == "POST":
            message = await receive()  # the guard read and bounded it
            body = message.get("body", b"") if message["type"] == "http.request" else b""
            given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
            if not same_origin(headers):
                response = PlainTextResponse("cross-origin request refused", 403)
            elif hmac.compare_digest(given, self.token):
                response = Response(status_code=303, headers={"location": "/"})
                cookie = f"{self.auth_cookie}={session_value(self.token)}; Path=/; HttpOnly; "
                response.raw_headers.append(_header(cookie + "SameSite=Strict"))
            else:
                response = HTMLResponse(_AUTH_FORM.format(error="wrong token"), 401)
        else:
            response = HTMLResponse(_AUTH_FORM.format(error=""))
        await response(scope, receive, send)

    def _refuse_auth(self, headers: Headers) -> Response:
        if _wants_json(headers):
            return JSONResponse({"error": "log in first: /auth"}, 401)
        return Response(status_code=303, headers={"location": "/auth"})

    def _csrf_problem(self, headers: Headers, cookies: dict[str, str]) -> str:
        if not same_origin(headers):
            return "cross-origin request refused (Origin/Referer must match Host)"
        cookie = cookies.get(self.csrf_cookie, "")
        sent = headers.get(CSRF_HEADER, "")
        if not cookie or not sent or not hmac.compare_digest(cookie, sent):
            return "missing or wrong CSRF token; reload the page"
        if not self.verifies(cookie):
            return "a CSRF token this server did not issue; reload the page"
        return ""

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes `max_body` (the rest is never read)."""
        length = headers.get("content-length")
        if length is not None and (not length.isascii() or not length.isdigit()):
            return None
        if length is not None and int(length) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the real channel (for
    `http.disconnect`)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


_AUTH_FORM = """<!doctype html><meta charset="utf-8"><title>hyperhive: log in</title>
<link rel="stylesheet" href="/static/hive.css"><main class="login-box panel"><h2>token</h2>
<p class="bad">{error}</p><form method="post" action="/auth">
<input type="password" name="token" autocomplete="current-password" autofocus>
<button>enter</button></form></main>"""


def _header(value: str) -> tuple[bytes, bytes]:
    return (b"set-cookie", value.encode("latin-1"))


def _refuse(headers: Headers, status: int, message: str) -> Response:
    if _wants_json(headers):
        return JSONResponse({"error": message}, status)
    return PlainTextResponse(message, status)
