"""Event views over stream-json shapes as claude 2.1.330 prints them (trimmed)."""

from __future__ import annotations

from typing import Any

from harness import events
from harness.claude import parse_line

INIT: dict[str, Any] = {
    "type": "system",
    "subtype": "init",
    "cwd": "/state",
    "session_id": "s-1",
    "tools": ["Bash", "mcp__hive__send", "mcp__hive__recv"],
    "mcp_servers": [{"name": "hive", "status": "connected"}],
    "model": "claude-opus-5-5",
    "claude_code_version": "2.1.330",
}
ASSISTANT: dict[str, Any] = {
    "type": "assistant",
    "message": {
        "id": "msg_1",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Sending."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "mcp__hive__send",
                "input": {"to": "bob"},
            },
        ],
    },
    "parent_tool_use_id": None,
    "session_id": "s-1",
}
TOOL_RESULT: dict[str, Any] = {
    "type": "user",
    "message": {
        "role": "user",
        "content": [
            {
                "tool_use_id": "toolu_1",
                "type": "tool_result",
                "content": [{"type": "text", "text": '{"id": 1}'}],
            },
            {"tool_use_id": "toolu_2", "type": "tool_result", "content": "boom", "is_error": True},
        ],
    },
}
RESULT: dict[str, Any] = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "duration_ms": 168,
    "num_turns": 2,
    "result": "done",
    "total_cost_usd": 0.00028,
    "usage": {"input_tokens": 20, "output_tokens": 10},
}


def test_init_lists_model_tools_and_mcp_servers() -> None:
    [init] = events.items(INIT)
    assert init == events.Init(
        "s-1",
        "claude-opus-5-5",
        ("Bash", "mcp__hive__send", "mcp__hive__recv"),
        (("hive", "connected"),),
    )
    assert events.summary(init) == "init model=claude-opus-5-5 mcp=hive:connected"


def test_assistant_message_splits_into_thinking_text_and_tool_calls() -> None:
    assert events.items(ASSISTANT) == [
        events.Thinking("hmm"),
        events.Text("Sending."),
        events.ToolUse("toolu_1", "mcp__hive__send", {"to": "bob"}),
    ]
    assert events.summary(events.items(ASSISTANT)[2]) == '→ mcp__hive__send {"to": "bob"}'


def test_tool_results_keep_text_and_error_flag() -> None:
    assert events.items(TOOL_RESULT) == [
        events.ToolResult("toolu_1", '{"id": 1}', False),
        events.ToolResult("toolu_2", "boom", True),
    ]
    assert events.summary(events.items(TOOL_RESULT)[1]) == "✗ boom"


def test_result_carries_cost_duration_and_usage() -> None:
    [result] = events.items(RESULT)
    assert result == events.Result(True, "success", "done", 0.00028, 168, 20, 10, 2)
    assert events.summary(result) == "result success 168 ms $0.0003"
    [failed] = events.items(
        {"type": "result", "subtype": "error_during_execution", "is_error": True}
    )
    assert isinstance(failed, events.Result) and not failed.ok and failed.cost_usd is None


def test_unknown_and_raw_events_are_kept_not_rejected() -> None:
    assert events.items({"type": "rate_limit_event"}) == [events.Other("rate_limit_event", None)]
    assert events.items({"type": "system", "subtype": "status"}) == [
        events.Other("system", "status")
    ]
    assert events.items({}) == [events.Other("", None)]
    assert events.items({"type": "assistant", "message": "garbled"}) == []
    assert events.summary(events.Text("a\n  b " + "x" * 300), limit=10) == "a b xxxxx…"


def test_non_json_stdout_lines_become_raw_events() -> None:
    assert parse_line(b'{"type": "result"}') == {"type": "result"}
    assert parse_line(b"Warning: something\r") == {"type": "raw", "text": "Warning: something"}
    assert parse_line(b"[1, 2]") == {"type": "raw", "text": "[1, 2]"}
    assert events.items(parse_line(b"oops")) == [events.Raw("oops")]
