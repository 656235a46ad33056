"""The dashboard hive-c0re serves: agents, approvals, questions, messages, reconcile, logs.

Server-rendered. The page is made of regions; `/events` streams the hive's bus over SSE
and the page's script refetches only the regions an event touches (`/region/<name>`),
merging them node by node so focus and typed input survive. Every action is a JSON POST
behind `ui.security.Guard` and is one call on `controller.operations`, as the sockets'
commands are.
"""

from __future__ import annotations

import logging

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from controller.broker import OPERATOR
from controller.bus import Event, EventType
from controller.metrics import CONTENT_TYPE as METRICS_TYPE
from controller.operations import LIFECYCLE, Operations
from controller.settings import parse_address
from ui.agent_proxy import AgentProxy
from ui.git_http import GitHttp, mount_git
from ui.http import (
    BadRequestError,
    ValuesResponse,
    action,
    query_int,
    read_json,
    text_field,
    utf8_text,
)
from ui.security import Guard, host_names, is_loopback, load_secret
from ui.server import serve_app
from ui.sse import PING_SECONDS, format_event, sse_response
from ui.templating import NO_STORE, create_templates, static_files
from ui.views import REGIONS, Views, event_script_data

__all__ = ["create_dashboard", "serve_dashboard"]

log = logging.getLogger(__name__)

VERBS = (*LIFECYCLE, "rebuild", "cancel", "purge")
LOG_LINES_MAX = 5000
PAGES_MAX = 100_000
# The key CSRF tokens are signed with (0600): the state dir is the operator's alone.
SECRET_FILE = "dashboard.secret"


class _Encoded:
    """Each bus event encoded once for every stream: with 100 browsers open, the JSON of
    an event is built once, not 100 times. Keyed by event id; the last few thousand kept
    (a stream further behind than that is cut off by the bus anyway)."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._cache: dict[int, bytes] = {}

    def __call__(self, event: Event) -> bytes:
        found = self._cache.get(event.id)
        if found is None:
            found = self._cache[event.id] = format_event(event.type, event.as_json(), event.id)
            if len(self._cache) > self.size:
                # dicts keep insertion order: drop the oldest half in one go
                for key in list(self._cache)[: self.size // 2]:
                    del self._cache[key]
        return found


class Dashboard:
    def __init__(self, ops: Operations, closing: anyio.Event, ping: float = PING_SECONDS) -> None:
        self.ops = ops
        self.views = Views(ops)
        self.templates = create_templates()
        self.closing = closing
        self.ping = ping
        self.encode = _Encoded()
        self.event_types = event_script_data()

    # --- pages -----------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        context = await self.views.page()
        return self.templates.TemplateResponse(
            request,
            "dashboard.html",
            {"page": "dashboard", "events": self.event_types, **context},
            headers=NO_STORE,
        )

    async def reconcile_page(self, request: Request) -> Response:
        context = await self.views.region("reconcile")
        notify = await self.views.notify()
        return self.templates.TemplateResponse(
            request,
            "reconcile.html",
            {
                "page": "reconcile",
                "reconcile": context,
                "notify": notify,
                "events": self.event_types,
            },
            headers=NO_STORE,
        )

    async def logs_page(self, request: Request) -> Response:
        names = await self.ops.agent_names()
        chosen = request.query_params.get("agent") or (names[0] if names else "")
        if chosen and chosen not in names:
            return HTMLResponse(f"no agent named {chosen!r}", 404)
        lines = await self.ops.logs(chosen, 400) if chosen else []
        activity = await self.ops.activity(chosen) if chosen else []
        notify = await self.views.notify()
        context = {
            "page": "logs",
            "names": names,
            "agent": chosen,
            "lines": lines,
            "activity": activity,
            "notify": notify,
            "events": self.event_types,
        }
        return self.templates.TemplateResponse(request, "logs.html", context, headers=NO_STORE)

    @action
    async def region(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in REGIONS:
            return HTMLResponse(f"no region {name!r}", 404)
        page = query_int(request, "page", 1, most=PAGES_MAX)
        history = query_int(request, "history", 1, most=PAGES_MAX)
        context = await self.views.region(name, page, history)
        return self.templates.TemplateResponse(
            request, f"_{name}.html", {name: context}, headers=NO_STORE
        )

    async def events(self, request: Request) -> Response:
        # sse_response subscribes before it asks for the greeting, so nothing published
        # after the page's fetch is lost.
        async def hello() -> bytes:
            return format_event(EventType.HELLO, {"applied_sha": self.ops.applied_sha()})

        return sse_response(
            self.ops, self.encode, shutdown=self.closing, ping=self.ping, first=hello
        )

    async def metrics(self, request: Request) -> Response:
        return Response(await self.ops.metrics(), media_type=METRICS_TYPE, headers=NO_STORE)

    @action
    async def logs_api(self, request: Request) -> Response:
        name = request.path_params["name"]
        lines = query_int(request, "lines", 400, most=LOG_LINES_MAX)
        return JSONResponse({"lines": await self.ops.logs(name, lines)})

    @action
    async def activity_api(self, request: Request) -> Response:
        lines = await self.ops.activity(request.path_params["name"])
        return ValuesResponse({"activity": lines})

    # --- actions ---------------------------------------------------------------------

    @action
    async def agent_action(self, request: Request) -> Response:
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in VERBS:
            raise BadRequestError(f"unknown action {verb!r}; use one of {', '.join(VERBS)}")
        if verb == "rebuild":
            queued = await self.ops.reconcile(name)
            return ValuesResponse({"ok": True, "queued": queued.queued})
        if verb == "cancel":  # the running turn (`hive cancel`)
            return ValuesResponse({"ok": True, "turn": await self.ops.cancel_turn(name)})
        if verb == "purge":  # its undelivered messages (`hive inbox purge`)
            return ValuesResponse({"ok": True, "purged": await self.ops.inbox_purge(name)})
        row = await self.ops.lifecycle(name, verb)
        return ValuesResponse({"ok": True, "agent": row})

    @action
    async def approve(self, request: Request) -> Response:
        approval_id = request.path_params["id"]
        approval = await self.ops.approve(approval_id)
        return ValuesResponse({"ok": True, "approval": approval})

    @action
    async def deny(self, request: Request) -> Response:
        approval_id = request.path_params["id"]
        reason = text_field(await read_json(request), "reason", required=False, limit=4000)
        approval = await self.ops.deny(approval_id, reason)
        return ValuesResponse({"ok": True, "approval": approval})

    @action
    async def rollback(self, request: Request) -> Response:
        """ "Roll back to here" on a history row: the tree as that approval left it."""
        approval = await self.ops.rollback(str(request.path_params["id"]))
        return ValuesResponse({"ok": True, "approval": approval})

    @action
    async def cancel_questions(self, request: Request) -> Response:
        """Cancel every pending question; each asker is told once."""
        cancelled = await self.ops.cancel_questions(None)
        return ValuesResponse({"ok": True, "cancelled": cancelled})

    @action
    async def answer(self, request: Request) -> Response:
        question_id = request.path_params["id"]
        data = await read_json(request)
        answer = data.get("answer")
        if isinstance(answer, list):
            if not all(isinstance(a, str) for a in answer):
                raise BadRequestError("answer must be text or a list of options")
            answer = [utf8_text(a, "answer") for a in answer]
        elif isinstance(answer, str):
            answer = utf8_text(answer, "answer")
        else:
            raise BadRequestError("answer must be text or a list of options")
        question = await self.ops.answer(question_id, answer)
        return ValuesResponse({"ok": True, "question": question})

    @action
    async def cancel_question(self, request: Request) -> Response:
        question_id = request.path_params["id"]
        question = await self.ops.cancel_question(question_id)
        return ValuesResponse({"ok": True, "question": question})

    @action
    async def send(self, request: Request) -> Response:
        data = await read_json(request)
        to = text_field(data, "to", limit=64).strip()
        sent = await self.ops.send(OPERATOR, to, text_field(data, "body"))
        return JSONResponse({"ok": True, "id": sent.id})


def create_dashboard(
    ops: Operations,
    *,
    token: str | None = None,
    loopback: bool = True,
    hosts: frozenset[str] = frozenset(),
    secret: bytes | None = None,
    closing: anyio.Event | None = None,
    ping: float = PING_SECONDS,
    metrics_token: str | None = None,
) -> Guard:
    """The dashboard app behind its guard (Host pinned to loopback and `hosts`, CSRF
    tokens signed with `secret`); `closing` ends its event streams, which ping every
    `ping` seconds."""
    d = Dashboard(ops, closing or anyio.Event(), ping)
    pages = AgentProxy(ops)
    app = Starlette(
        routes=[
            Route("/agents/{name}", pages.root),
            Route("/agents/{name}/api/send", pages.send, methods=["POST"]),
            Route("/agents/{name}/{path:path}", pages.page, methods=["GET", "POST"]),
            Route("/", d.index),
            Route("/reconcile", d.reconcile_page),
            Route("/logs", d.logs_page),
            Route("/region/{name}", d.region),
            Route("/metrics", d.metrics),
            Route("/events", d.events),
            Route("/api/logs/{name}", d.logs_api),
            Route("/api/activity/{name}", d.activity_api),
            Route("/api/agents/{name}/{verb}", d.agent_action, methods=["POST"]),
            Route("/api/approvals/{id:int}/approve", d.approve, methods=["POST"]),
            Route("/api/approvals/{id:int}/deny", d.deny, methods=["POST"]),
            Route("/api/approvals/{id:int}/rollback", d.rollback, methods=["POST"]),
            Route("/api/questions/cancel-all", d.cancel_questions, methods=["POST"]),
            Route("/api/questions/{id:int}/answer", d.answer, methods=["POST"]),
            Route("/api/questions/{id:int}/cancel", d.cancel_question, methods=["POST"]),
            Route("/api/send", d.send, methods=["POST"]),
            Mount("/static", static_files(), name="static"),
        ]
    )
    return Guard(
        app,
        name="dashboard",
        token=token,
        loopback=loopback,
        hosts=hosts,
        secret=secret,
        metrics_token=metrics_token,
    )


async def serve_dashboard(
    ops: Operations, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve the dashboard on `settings.dashboard`; the port lands in `hive.dashboard_port`."""
    hive = ops.hive
    host, port = parse_address(hive.settings.dashboard)
    token = hive.settings.environ.get("HIVE_DASHBOARD_TOKEN") or None
    loopback = is_loopback(host)
    if not loopback and token is None:
        log.warning(
            "dashboard bound to %s without HIVE_DASHBOARD_TOKEN: anyone who reaches it "
            "can approve changes",
            host,
        )
    closing = anyio.Event()
    secret = await anyio.to_thread.run_sync(load_secret, hive.settings.state_dir / SECRET_FILE)
    app = create_dashboard(
        ops,
        token=token,
        loopback=loopback,
        hosts=host_names(host),
        secret=secret,
        closing=closing,
        metrics_token=hive.settings.environ.get("HIVE_METRICS_TOKEN") or None,
    )

    # Git over HTTP in front of the guard: its door is the token (ui/git_http.py).
    git = GitHttp(hive.settings.state_dir, ops.git_user, environ=dict(hive.settings.environ))

    def bound(port: int) -> None:
        hive.dashboard_port = port

    await serve_app(
        mount_git(app, git),
        host,
        port,
        what="dashboard",
        closing=closing,
        on_bound=bound,
        task_status=task_status,
    )
