"""Stream-json events as the agent page shows them: `harness.events` items, as JSON.

The page's script only lays these out; deciding what an event *is* (assistant text, a
tool call and its arguments, a tool result, the turn's result) stays in Python, in one
place, shared with the log lines. Long tool inputs and results are clipped so one event
cannot flood the page.
"""

from __future__ import annotations

import json
from typing import Any

from harness import events as ev

__all__ = ["CLIP", "view"]

CLIP = 6000


def _clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more chars)"


def _item(item: ev.Item) -> dict[str, Any]:
    match item:
        case ev.Init():
            return {
                "kind": "init",
                "model": item.model,
                "tools": len(item.tools),
                "mcp": [f"{n}:{s}" for n, s in item.mcp_servers],
            }
        case ev.Text():
            return {"kind": "text", "text": _clip(item.text)}
        case ev.Thinking():
            return {"kind": "thinking", "text": _clip(item.text, 2000)}
        case ev.ToolUse():
            args = json.dumps(item.input, ensure_ascii=False, indent=1)
            return {"kind": "tool_use", "id": item.id, "name": item.name, "input": _clip(args)}
        case ev.ToolResult():
            return {
                "kind": "tool_result",
                "id": item.tool_use_id,
                "text": _clip(item.text),
                "is_error": item.is_error,
            }
        case ev.Result():
            return {
                "kind": "result",
                "ok": item.ok,
                "subtype": item.subtype,
                "cost_usd": item.cost_usd,
                "duration_ms": item.duration_ms,
                "input_tokens": item.input_tokens,
                "output_tokens": item.output_tokens,
            }
        case ev.Raw():
            return {"kind": "raw", "text": _clip(item.text)}
        case ev.Wake():
            return {
                "kind": "wake",
                "id": item.message_id,
                "sender": item.sender,
                "text": _clip(item.body, 300),
            }
        case _:
            return {"kind": "other", "text": ev.summary(item)}


def view(event_id: int, turn: int | None, ts: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """One stored or live event, ready for the page."""
    return {"id": event_id, "turn": turn, "ts": ts, "items": [_item(i) for i in ev.items(event)]}
