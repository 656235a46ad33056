"""Classify claude's stream-json events for display: pure functions over the raw dicts.

The raw event is what we store and stream; these views are what a page or a log line
shows. One event can hold several items (an assistant message with text and two tool
calls), so `items()` returns a list. Unknown shapes become `Other`, never an error: the
CLI adds event types between versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "WAKE",
    "Init",
    "Item",
    "Other",
    "Raw",
    "Result",
    "Text",
    "Thinking",
    "ToolResult",
    "ToolUse",
    "Wake",
    "items",
    "summary",
]

Event = dict[str, Any]


@dataclass(frozen=True)
class Init:
    session_id: str | None
    model: str | None
    tools: tuple[str, ...]
    mcp_servers: tuple[tuple[str, str], ...]  # (name, status)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Thinking:
    text: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    text: str
    is_error: bool


@dataclass(frozen=True)
class Result:
    ok: bool
    subtype: str
    text: str
    cost_usd: float | None
    duration_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    num_turns: int | None


@dataclass(frozen=True)
class Raw:
    text: str


# The harness's own event, stored first in every turn: the message the agent woke on
# (so a page backfilled from history shows what each turn answered).
WAKE = "hive_wake"


@dataclass(frozen=True)
class Wake:
    message_id: int | None
    sender: str
    body: str


@dataclass(frozen=True)
class Other:
    type: str
    subtype: str | None


Item = Init | Text | Thinking | ToolUse | ToolResult | Result | Raw | Wake | Other


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _blocks(event: Event) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _result_text(content: object) -> str:
    """A tool_result's content is a string or a list of blocks; keep the text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _init(event: Event) -> Init:
    servers = []
    for server in event.get("mcp_servers") or []:
        if isinstance(server, dict):
            servers.append((str(server.get("name", "")), str(server.get("status", ""))))
    tools = event.get("tools") or []
    return Init(
        session_id=_str(event.get("session_id")),
        model=_str(event.get("model")),
        tools=tuple(str(t) for t in tools if isinstance(t, str)),
        mcp_servers=tuple(servers),
    )


def _result(event: Event) -> Result:
    usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    cost = event.get("total_cost_usd")
    subtype = _str(event.get("subtype")) or ""
    return Result(
        ok=subtype == "success" and not event.get("is_error", False),
        subtype=subtype,
        text=_str(event.get("result")) or "",
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        duration_ms=_int(event.get("duration_ms")),
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        num_turns=_int(event.get("num_turns")),
    )


def items(event: Event) -> list[Item]:
    """The displayable items of one stream-json event."""
    kind = _str(event.get("type")) or ""
    subtype = _str(event.get("subtype"))
    if kind == "system" and subtype == "init":
        return [_init(event)]
    if kind == "result":
        return [_result(event)]
    if kind == "raw":
        return [Raw(str(event.get("text", "")))]
    if kind == WAKE:
        return [
            Wake(
                _int(event.get("message_id")),
                str(event.get("sender", "")),
                str(event.get("body", "")),
            )
        ]
    if kind == "assistant":
        out: list[Item] = []
        for block in _blocks(event):
            btype = block.get("type")
            if btype == "text":
                out.append(Text(str(block.get("text", ""))))
            elif btype == "thinking":
                out.append(Thinking(str(block.get("thinking", ""))))
            elif btype == "tool_use":
                args = block.get("input")
                out.append(
                    ToolUse(
                        str(block.get("id", "")),
                        str(block.get("name", "")),
                        args if isinstance(args, dict) else {},
                    )
                )
        return out
    if kind == "user":
        results: list[Item] = []
        for block in _blocks(event):
            if block.get("type") == "tool_result":
                results.append(
                    ToolResult(
                        str(block.get("tool_use_id", "")),
                        _result_text(block.get("content")),
                        bool(block.get("is_error", False)),
                    )
                )
        return results
    return [Other(kind, subtype)]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(item: Item, limit: int = 160) -> str:
    """One line for a log or a compact view."""
    match item:
        case Init():
            servers = ", ".join(f"{n}:{s}" for n, s in item.mcp_servers) or "none"
            return f"init model={item.model} mcp={servers}"
        case Text():
            return _clip(item.text, limit)
        case Thinking():
            return "(thinking) " + _clip(item.text, limit)
        case ToolUse():
            return f"→ {item.name} " + _clip(json.dumps(item.input, ensure_ascii=False), limit)
        case ToolResult():
            mark = "✗" if item.is_error else "←"
            return f"{mark} " + _clip(item.text, limit)
        case Result():
            cost = f"${item.cost_usd:.4f}" if item.cost_usd is not None else "$?"
            return f"result {item.subtype} {item.duration_ms} ms {cost}"
        case Raw():
            return _clip(item.text, limit)
        case Wake():
            return f"woke on #{item.message_id} from {item.sender}: " + _clip(item.body, limit)
        case Other():
            return f"{item.type}" + (f"/{item.subtype}" if item.subtype else "")
