"""The turn meter: tool calls counted from stream-json events as claude prints them."""

from __future__ import annotations

from typing import Any

from harness.meter import TurnMeter


def tool_use(tool_id: str) -> dict[str, Any]:
    return {
        "type": "assistant",
        "message": {"content": [{"type": "tool_use", "id": tool_id, "name": "mcp__hive__recv"}]},
    }


def test_the_meter_says_over_once_the_tool_calls_pass_the_cap() -> None:
    meter = TurnMeter(cap=2)
    assert not meter.observe({"type": "system", "subtype": "init", "model": "claude-x"})
    assert [meter.observe(tool_use(f"t{n}")) for n in range(4)] == [False, False, True, False]
    assert meter.tool_calls == 4 and meter.over and meter.model == "claude-x"


def test_the_same_tool_call_seen_twice_counts_once_and_text_counts_not() -> None:
    meter = TurnMeter(cap=1)
    text = {"type": "assistant", "message": {"content": [{"type": "text", "text": "hi"}]}}
    for event in (tool_use("a"), tool_use("a"), text, {"type": "user"}, {"type": "raw"}):
        meter.observe(event)
    assert meter.tool_calls == 1 and not meter.over


def test_the_result_gives_the_cache_tokens_and_no_cap_is_never_over() -> None:
    meter = TurnMeter()
    result = {
        "type": "result",
        "usage": {"cache_read_input_tokens": 1200, "cache_creation_input_tokens": -1},
    }
    meter.observe(result)
    assert (meter.cache_read_tokens, meter.cache_creation_tokens) == (1200, None)
    for n in range(500):
        meter.observe(tool_use(str(n)))
    assert not meter.over
