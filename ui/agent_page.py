"""The per-agent page the harness serves on its page socket, behind the dashboard.

The harness listens on a unix socket only hive-c0re reaches (inherited as `HIVE_WEB_FD`
from the process runtime, or bound at `HIVE_WEB_SOCKET` in a container); the dashboard
serves it at `/agents/<name>/` (`ui.agent_proxy`) behind its own guard: one origin, one
login, one CSRF scheme. So this app has no guard of its own: the proxy checked the
request and hands over the CSRF token to render (`x-hive-csrf`). Its links are relative,
so they work under any prefix.

A terminal-styled live tail: on load the page asks `/api/history` for the recent events
(rendered by `ui.agent_view`), then opens `/events?after=<last id>`. The stream
subscribes to the agent's live bus *before* it reads the history after that id, so
nothing falls in the gap between the two, and skips live events it already sent.

The prompt's messages go to the agent's inbox as the operator through the dashboard
(an operation of hive-c0re, never anything on the agent's socket); its slash commands
(`ui.slash`) come here, to `/api/slash`. The login form stores Claude credentials in the
agent's `CLAUDE_CONFIG_DIR` (`ui.credentials`) and the page only ever says which kind is
stored.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.fanout import Event
from harness.agent import Agent
from reconcilers.backoff import Backoff
from ui import credentials, slash
from ui.agent_view import view
from ui.http import BadRequestError, action, query_int, read_json, text_field
from ui.server import serve_on
from ui.sse import PING_SECONDS, format_event, sse_response
from ui.templating import NO_STORE, create_templates, static_files

__all__ = ["create_agent_page", "serve_agent_page"]

log = logging.getLogger(__name__)

BACKFILL = 300
BACKFILL_MAX = 2000


def _state(agent: Agent) -> dict[str, Any]:
    return {
        "state": agent.state,
        "reason": agent.reason,
        "since": agent.since,
        "model": agent.model,
        "last_turn": agent.last_turn,
    }


class AgentPage:
    def __init__(
        self, agent: Agent, config_dir: Path, closing: anyio.Event, ping: float = PING_SECONDS
    ) -> None:
        self.agent = agent
        self.config_dir = config_dir
        self.closing = closing
        self.ping = ping
        self.templates = create_templates()

    async def index(self, request: Request) -> Response:
        context = {"name": self.agent.config.name, "state": _state(self.agent), "help": slash.HELP}
        return self.templates.TemplateResponse(request, "agent.html", context, headers=NO_STORE)

    async def login_page(self, request: Request) -> Response:
        current = credentials.status(self.config_dir)
        context = {
            "name": self.agent.config.name,
            "kind": current.kind,
            "stored": credentials.stored_ago(current),
        }
        return self.templates.TemplateResponse(request, "login.html", context, headers=NO_STORE)

    @action
    async def history(self, request: Request) -> Response:
        limit = query_int(request, "limit", BACKFILL, most=BACKFILL_MAX)
        before = query_int(request, "before", 0, most=2**62) or None
        events: list[dict[str, Any]] = []
        older = False
        if self.agent.history is not None:
            # One more than asked: whether a "load older" has anything to load.
            stored = await self.agent.history.recent(limit + 1, before_id=before)
            older = len(stored) > limit
            events = [view(e.id, e.turn_id, e.ts, e.event) for e in stored[-limit:]]
        return JSONResponse(
            {
                "events": events,
                "last_id": events[-1]["id"] if events else 0,
                "older": older,
                **_state(self.agent),
            }
        )

    async def events(self, request: Request) -> Response:
        raw = request.query_params.get("after") or request.headers.get("last-event-id") or "0"
        if not raw.isdigit():
            return JSONResponse({"error": "after must be an event id"}, 400)
        after = int(raw)
        agent = self.agent
        sent = after

        # Runs once subscribed to the live bus, so nothing falls between history and live.
        async def backfill() -> bytes:
            nonlocal sent
            first = bytearray(format_event("state", _state(agent)))
            if agent.history is not None:
                for e in await agent.history.recent(BACKFILL_MAX, after_id=after):
                    first += format_event("event", view(e.id, e.turn_id, e.ts, e.event), e.id)
                    sent = max(sent, e.id)
            return bytes(first)

        def encode(event: Event) -> bytes | None:
            data = event.data
            if event.type == "event":
                if data["id"] <= sent:
                    return None  # already in the backfill
                shown = view(data["id"], data.get("turn"), event.ts, data["event"])
                return format_event("event", shown, data["id"])
            if event.type == "state":
                return format_event("state", {**_state(agent), **data})
            return format_event(event.type, data)

        return sse_response(
            agent.live, encode, shutdown=self.closing, ping=self.ping, first=backfill
        )

    async def inbox(self, request: Request) -> Response:
        try:
            rows = await self.agent.call("inbox")
        except Exception as exc:  # the hive socket may be down; the page says so
            return JSONResponse({"error": f"inbox unavailable: {exc}", "messages": []}, 503)
        return JSONResponse({"messages": rows})

    @action
    async def slash(self, request: Request) -> Response:
        text = text_field(await read_json(request), "body")
        command = slash.parse(text)
        if command is None:
            raise BadRequestError("not a slash command; messages go through the dashboard")
        try:
            return JSONResponse({"ok": True, "output": slash.run(command, self.agent)})
        except slash.UnknownCommandError as exc:
            raise BadRequestError(str(exc)) from exc

    @action
    async def cancel(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "cancelled": self.agent.cancel()})

    @action
    async def login(self, request: Request) -> Response:
        data = await read_json(request)
        kind = text_field(data, "kind", limit=32)
        secret = text_field(data, "secret", limit=8192)
        try:
            stored = await anyio.to_thread.run_sync(
                credentials.store, self.config_dir, kind, secret
            )
        except credentials.InvalidCredentialError as exc:
            raise BadRequestError(str(exc)) from exc
        return JSONResponse({"ok": True, "kind": stored.kind})

    @action
    async def logout(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(credentials.forget, self.config_dir)
        return JSONResponse({"ok": True, "kind": None})


CSRF_FROM_PROXY = "x-hive-csrf"


class _ProxiedToken:
    """Puts the dashboard's CSRF token (sent by the proxy) where the templates read it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = Headers(scope=scope).get(CSRF_FROM_PROXY, "")
            scope.setdefault("state", {})["csrf"] = token
        await self.app(scope, receive, send)


def create_agent_page(
    agent: Agent,
    config_dir: Path,
    *,
    closing: anyio.Event | None = None,
    ping: float = PING_SECONDS,
) -> ASGIApp:
    page = AgentPage(agent, config_dir, closing or anyio.Event(), ping)
    app = Starlette(
        routes=[
            Route("/", page.index),
            Route("/login", page.login_page),
            Route("/events", page.events),
            Route("/api/history", page.history),
            Route("/api/inbox", page.inbox),
            Route("/api/slash", page.slash, methods=["POST"]),
            Route("/api/cancel", page.cancel, methods=["POST"]),
            Route("/api/login", page.login, methods=["POST"]),
            Route("/api/logout", page.logout, methods=["POST"]),
            Mount("/static", static_files(), name="static"),
        ]
    )
    return _ProxiedToken(app)


def _listener(agent: Agent) -> socket.socket | None:
    """The page's listening socket: inherited, or bound at the configured path."""
    config = agent.config
    if config.web_fd is not None:
        sock = socket.socket(fileno=config.web_fd)
        sock.set_inheritable(False)  # nothing claude runs gets it
        sock.setblocking(False)
        return sock
    if config.web_socket is not None:
        path = Path(config.web_socket)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.chmod(0o600)
        sock.listen(128)
        sock.setblocking(False)
        return sock
    return None


async def serve_agent_page(
    agent: Agent,
    env: dict[str, str] | None = None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the page on its socket (`HIVE_WEB_FD`, else `HIVE_WEB_SOCKET`; neither: no
    page). A failing server is restarted on the same socket: the page going down must
    never take the agent's turn loop with it."""
    env = dict(os.environ if env is None else env)
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or agent.config.state_dir / "claude")
    try:
        sock = _listener(agent)
    except OSError as exc:
        log.error("%s page: cannot listen (%s); no page", agent.config.name, exc)
        sock = None
    task_status.started()
    if sock is None:
        return
    log.info("%s page listening on %s", agent.config.name, sock.getsockname() or "fd")
    for delay in Backoff(base=1.0, cap=30.0).delays():
        closing = anyio.Event()
        app = create_agent_page(agent, config_dir, closing=closing)
        try:
            # dup: serve_on closes the socket it was given, and a restart needs it again
            await serve_on(app, socket.socket(fileno=os.dup(sock.fileno())), closing=closing)
        except Exception:
            log.exception("%s page failed; restarting in %.0fs", agent.config.name, delay)
        await anyio.sleep(delay)
