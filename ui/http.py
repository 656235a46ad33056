"""Request helpers shared by both apps: bounded JSON bodies and errors as clear 4xx.

Every action answers JSON. A bad body, a missing field or a refused operation comes back
as `{"error": message}` with a 4xx status and changes nothing; the pages show the message
next to the control that caused it. The guard (`ui.security.Guard`) has already capped
the body while it streamed in; here it must be a JSON object of sane depth, its text
encodable as UTF-8 (JSON can carry a lone surrogate, which nothing downstream can store),
and numbers in queries plain ASCII digits of sane length.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller.errors import ConflictError, ForbiddenError, HiveError, NotFoundError
from controller.protocol import ProtocolError, jsonable
from ui.security import MAX_BODY

__all__ = [
    "BadRequestError",
    "ValuesResponse",
    "action",
    "query_int",
    "read_json",
    "text_field",
    "utf8_text",
]

log = logging.getLogger(__name__)

# Deep enough for any body we take; a 200 KB `[[[[...` is refused before json recurses.
MAX_DEPTH = 32
MAX_DIGITS = 18

_STATUS: dict[type[HiveError], int] = {NotFoundError: 404, ConflictError: 409, ForbiddenError: 403}
_PROTOCOL_STATUS = {
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unreachable": 503,
    "closed": 503,
}


class BadRequestError(Exception):
    """Raised when a request body or field is malformed."""


class ValuesResponse(JSONResponse):
    """JSON of the hive's typed values, encoded as the sockets encode them."""

    def render(self, content: object) -> bytes:
        return super().render(jsonable(content))


async def read_json(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise BadRequestError(f"body too large (limit {MAX_BODY} bytes)")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadRequestError(f"body too large (limit {MAX_BODY} bytes)")
    if not raw:
        return {}
    if _depth(raw) > MAX_DEPTH:
        raise BadRequestError(f"body is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequestError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequestError("body must be a JSON object")
    return data


def _depth(raw: bytes) -> int:
    """How deep brackets nest in `raw` (brackets inside strings counted too: an upper
    bound, which is all a limit needs)."""
    depth = deepest = 0
    for byte in raw.translate(None, delete=_NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def utf8_text(value: str, key: str) -> str:
    """`value`, refused when it holds a lone surrogate (valid JSON, not storable text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequestError(f"{key} is not valid text ({exc.reason})") from exc
    return value


def text_field(
    data: dict[str, Any], key: str, *, required: bool = True, limit: int = 256 * 1024
) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string")
    if required and not value.strip():
        raise BadRequestError(f"{key} is empty")
    if len(value) > limit:
        raise BadRequestError(f"{key} is longer than {limit} characters")
    return utf8_text(value, key)


def query_int(request: Request, key: str, default: int, *, most: int) -> int:
    """A whole-number query parameter, at most `most` (more is clipped, not refused)."""
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
        raise BadRequestError(f"{key} must be a whole number")
    return min(int(raw), most)


Handler = Callable[..., Awaitable[Response]]


def action(handler: Handler) -> Handler:
    """Map our errors to JSON 4xx answers (functions or methods taking the request last)."""

    @functools.wraps(handler)
    async def wrapped(*args: Any) -> Response:
        try:
            return await handler(*args)
        except BadRequestError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except HiveError as exc:
            return JSONResponse({"error": exc.message}, _STATUS.get(type(exc), 400))
        except ProtocolError as exc:
            return JSONResponse({"error": exc.message}, _PROTOCOL_STATUS.get(exc.code, 400))
        except OverflowError:  # an id in the path too large for sqlite
            return JSONResponse({"error": "a number in the request is out of range"}, 400)

    return wrapped
