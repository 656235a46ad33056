"""The per-agent page the harness serves on `HIVE_WEB_PORT`.

A terminal-styled live tail: on load the page asks `/api/history` for the recent events
(rendered by `ui.agent_view`), then opens `/events?after=<last id>`. The stream
subscribes to the agent's live bus *before* it reads the history after that id, so
nothing falls in the gap between the two, and skips live events it already sent.

The prompt sends to the agent's inbox as the operator (the socket's `operator_send`),
or runs a slash command (`ui.slash`). The login form stores Claude credentials in the
agent's `CLAUDE_CONFIG_DIR` (`ui.credentials`) and the page only ever says which kind is
stored.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from controller.fanout import Event
from harness.agent import Agent
from reconcilers.backoff import Backoff
from ui import credentials, slash
from ui.agent_view import view
from ui.http import BadRequestError, action, query_int, read_json, text_field
from ui.security import Guard, is_loopback
from ui.server import serve_app
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
        events: list[dict[str, Any]] = []
        if self.agent.history is not None:
            stored = await self.agent.history.recent(limit)
            events = [view(e.id, e.turn_id, e.ts, e.event) for e in stored]
        return JSONResponse(
            {"events": events, "last_id": events[-1]["id"] if events else 0, **_state(self.agent)}
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
    async def send(self, request: Request) -> Response:
        text = text_field(await read_json(request), "body")
        command = slash.parse(text)
        if command is not None:
            try:
                return JSONResponse({"ok": True, "output": slash.run(command, self.agent)})
            except slash.UnknownCommandError as exc:
                raise BadRequestError(str(exc)) from exc
        sent = await self.agent.call("operator_send", body=slash.message_text(text))
        return JSONResponse({"ok": True, "id": sent["id"]})

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


def create_agent_page(
    agent: Agent,
    config_dir: Path,
    *,
    token: str | None = None,
    loopback: bool = True,
    closing: anyio.Event | None = None,
    ping: float = PING_SECONDS,
) -> Guard:
    page = AgentPage(agent, config_dir, closing or anyio.Event(), ping)
    app = Starlette(
        routes=[
            Route("/", page.index),
            Route("/login", page.login_page),
            Route("/events", page.events),
            Route("/api/history", page.history),
            Route("/api/inbox", page.inbox),
            Route("/api/send", page.send, methods=["POST"]),
            Route("/api/cancel", page.cancel, methods=["POST"]),
            Route("/api/login", page.login, methods=["POST"]),
            Route("/api/logout", page.logout, methods=["POST"]),
            Mount("/static", static_files(), name="static"),
        ]
    )
    return Guard(app, name=f"agent-{agent.config.name}", token=token, loopback=loopback)


async def serve_agent_page(
    agent: Agent,
    env: dict[str, str] | None = None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the page on `HIVE_WEB_PORT` (host `HIVE_WEB_HOST`, default loopback).

    A taken port is retried with backoff and a failing server is restarted: the page
    going down must never take the agent's turn loop with it."""
    env = dict(os.environ if env is None else env)
    port = agent.config.web_port
    if port is None:
        task_status.started()
        return
    host = env.get("HIVE_WEB_HOST") or "127.0.0.1"
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or agent.config.state_dir / "claude")
    loopback = is_loopback(host)
    token = env.get("HIVE_WEB_TOKEN") or None
    if not loopback and token is None:
        log.warning("agent page bound to %s without HIVE_WEB_TOKEN", host)
    status: anyio.abc.TaskStatus[None] = task_status
    for delay in Backoff(base=1.0, cap=30.0).delays():
        closing = anyio.Event()
        app = create_agent_page(agent, config_dir, token=token, loopback=loopback, closing=closing)
        try:
            await serve_app(
                app,
                host,
                port,
                what=f"{agent.config.name} page",
                closing=closing,
                grace=1,
                task_status=status,
            )
        except Exception:
            log.exception("%s page failed; restarting in %.0fs", agent.config.name, delay)
        status = anyio.TASK_STATUS_IGNORED
        await anyio.sleep(delay)
