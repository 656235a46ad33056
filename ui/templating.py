"""Jinja2 templates and static assets shared by the dashboard and the agent page.

Starlette's `Jinja2Templates` over our own environment: autoescaping on for every
template, undefined names are errors, and the filters are the small formatting helpers
both pages need (short shas, durations, ages). What every page needs from its request
(the CSRF token) comes from a context processor, so handlers pass only their own
context. Assets are served from the package, so nothing is fetched from a CDN.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from starlette.requests import Request
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

__all__ = [
    "NO_STORE",
    "STATIC_DIR",
    "TEMPLATE_DIR",
    "age",
    "create_templates",
    "duration",
    "environment",
    "request_context",
    "short",
    "static_files",
]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
# Pages carry a per-browser CSRF token and live state: never cached.
NO_STORE = {"cache-control": "no-store"}


def short(sha: str | None, n: int = 10) -> str:
    return (sha or "")[:n]


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def age(ts: str | float | None, now: datetime | None = None) -> str:
    """'12s', '3m', '5h', '2d' since an ISO timestamp or epoch seconds."""
    if ts is None or ts == "":
        return "-"
    when = (
        datetime.fromtimestamp(ts, UTC)
        if isinstance(ts, float | int)
        else datetime.fromisoformat(ts)
    )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    secs = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _tojson_attr(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def environment() -> jinja2.Environment:
    """The package's templates: autoescaped, strict about undefined names, our filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(short=short, duration=duration, age=age, jsonattr=_tojson_attr)
    # An empty matrix cell, repeated by count (`ui.graph.Matrix` is sparse).
    env.globals["empty_cell"] = markupsafe.Markup("<td></td>")
    return env


def request_context(request: Request) -> dict[str, Any]:
    """What every page gets from its request: the CSRF token `ui.security.Guard` issued
    (base.html puts it where the page's script reads it)."""
    return {"csrf": getattr(request.state, "csrf", "")}


def create_templates() -> Jinja2Templates:
    """`templates.TemplateResponse(request, name, context, headers=NO_STORE)` renders a
    page; `templates.get_template(name).render(...)` a fragment."""
    return Jinja2Templates(env=environment(), context_processors=[request_context])


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
