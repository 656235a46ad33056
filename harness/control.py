"""Claude Code's control protocol over stream-json stdin/stdout: the message shapes.

What the official Agent SDK speaks to the CLI (checked against claude 2.1.330 here):

- we send user turns as `{"type": "user", "message": {"role": "user", "content": ...}}`;
- either side sends `{"type": "control_request", "request_id", "request": {"subtype", ...}}`
  and the other answers `{"type": "control_response", "response": {"subtype": "success",
  "request_id", "response": {...}}}` (or `"subtype": "error", "error": text`);
- ours: `initialize` (first, before any user turn), `interrupt` (ends the running turn
  with a `result` event in ~80 ms), `set_model`;
- the CLI's: `can_use_tool` (with `--permission-prompt-tool stdio`, for a tool outside
  `--allowedTools`; answered `{"behavior": "allow", "updatedInput"}` or
  `{"behavior": "deny", "message"}`) and `mcp_message` (JSON-RPC for an MCP server
  configured as `{"type": "sdk"}`; answered `{"mcp_response": <JSON-RPC reply>}`);
- `control_cancel_request {request_id}` from the CLI: it no longer waits for that answer
  (an interrupted turn's pending permission question, say).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ControlRequest",
    "error_response",
    "parse_control_request",
    "request",
    "success_response",
    "user_message",
]

JSONDict = dict[str, Any]


def _line(obj: JSONDict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


def user_message(text: str) -> bytes:
    message = {"role": "user", "content": text}
    return _line({"type": "user", "message": message, "parent_tool_use_id": None})


def request(request_id: str, subtype: str, **fields: Any) -> bytes:
    return _line(
        {
            "type": "control_request",
            "request_id": request_id,
            "request": {"subtype": subtype, **fields},
        }
    )


def success_response(request_id: str, response: JSONDict) -> bytes:
    body = {"subtype": "success", "request_id": request_id, "response": response}
    return _line({"type": "control_response", "response": body})


def error_response(request_id: str, error: str) -> bytes:
    body = {"subtype": "error", "request_id": request_id, "error": error}
    return _line({"type": "control_response", "response": body})


@dataclass(frozen=True)
class ControlRequest:
    """A control request the CLI sent us."""

    request_id: str
    subtype: str
    body: JSONDict


def parse_control_request(event: JSONDict) -> ControlRequest | None:
    """The request in a `control_request` event, or None when it is malformed."""
    request_id, body = event.get("request_id"), event.get("request")
    if not isinstance(request_id, str) or not isinstance(body, dict):
        return None
    subtype = body.get("subtype")
    if not isinstance(subtype, str):
        return None
    return ControlRequest(request_id, subtype, body)
