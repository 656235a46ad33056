"""Jinja2 templates and static assets shared by the dashboard and the agent page.

Autoescaping is on for every template; the filters are the small formatting helpers
both pages need (short shas, durations, ages). Assets are served from the package, so
nothing is fetched from a CDN.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "Templates", "age", "duration", "short", "static_files"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


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


class Templates:
    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(short=short, duration=duration, age=age, jsonattr=_tojson_attr)

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def response(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        csrf = getattr(request.state, "csrf", "")
        return HTMLResponse(
            self.render(template, csrf=csrf, **context),
            status,
            headers={"cache-control": "no-store"},
        )


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
