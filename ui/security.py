"""The guard in front of every operator page: host pinning, optional login, CSRF.

One pure-ASGI middleware, so no route can forget it:
- **Host pinning.** A server bound to loopback answers only requests whose `Host` is a
  loopback name; a DNS-rebinding page that resolves `evil.example` to 127.0.0.1 gets 421.
- **Optional token.** When a token is configured (`HIVE_DASHBOARD_TOKEN`, or
  `HIVE_WEB_TOKEN` for agent pages) every request needs it, as `Authorization: Bearer` or
  as the cookie `/auth` sets (an HMAC of the token, never the token itself).
- **CSRF.** State changes are POSTs, and a POST passes only when it is same-origin (its
  `Origin`, else `Referer`, names the very host it was sent to) *and* carries the
  per-browser token in the `X-CSRF-Token` header, equal to the SameSite=Strict cookie the
  pages set (double submit). A custom header cannot be sent cross-origin without a CORS
  preflight we never answer, so either check alone would do; both are cheap.

Cookies are not isolated by port, so their names carry the app's name: the dashboard and
each agent page keep their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_HEADER", "Guard", "is_loopback", "same_origin", "session_value"]

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1]
    return host_header.rsplit(":", 1)[0] if ":" in host_header else host_header


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
        self, app: ASGIApp, *, name: str, token: str | None = None, loopback: bool = True
    ) -> None:
        self.app = app
        self.token = token or None
        self.loopback = loopback
        self.csrf_cookie = f"hive-csrf-{name}"
        self.auth_cookie = f"hive-auth-{name}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.loopback and not is_loopback(_hostname(headers.get("host", ""))):
            await PlainTextResponse("unexpected Host header", 421)(scope, receive, send)
            return
        cookies = _cookies(headers)
        method = scope["method"]
        if self.token is not None and scope["path"] == "/auth":
            await self._auth(scope, receive, send, headers)
            return
        public = scope["path"].startswith("/static/")  # assets hold no secrets
        if self.token is not None and not public and not self._authorised(headers, cookies):
            await self._refuse_auth(headers)(scope, receive, send)
            return
        if method not in SAFE_METHODS:
            problem = self._csrf_problem(headers, cookies)
            if problem:
                await _refuse(headers, 403, problem)(scope, receive, send)
                return
        token = cookies.get(self.csrf_cookie) or ""
        fresh = not token or len(token) < 32
        if fresh:
            token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        scope["state"]["auth_cookie"] = self.auth_cookie
        scope["state"]["auth_token"] = self.token

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                cookie = f"{self.csrf_cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message["headers"], _header(cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

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
            body = b""
            more = True
            while more and len(body) < 16_384:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
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
        return ""


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
