"""What one turn did, counted from claude's stream-json events: its tool calls (to
interrupt a turn over its cap, `max_tool_calls_per_turn` of `hive.toml`), the model that
answered and the cache tokens, which the harness reports with the finished turn.

Measured with claude 2.1.330 `--output-format stream-json --verbose`: the first event is
`{"type": "system", "subtype": "init", "model": ...}`; each content block of the model's
reply comes as its own `assistant` event (`message.content`, one `tool_use` block each
for tool calls, with an `id`); the closing `result` event's `usage` holds
`cache_read_input_tokens` and `cache_creation_input_tokens`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TurnMeter"]


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


class TurnMeter:
    """Feed it every event of one turn (`observe`); `over` once the tool calls pass `cap`."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.model: str | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self._tools: set[str] = set()
        self._anonymous = 0

    @property
    def tool_calls(self) -> int:
        return len(self._tools) + self._anonymous

    @property
    def over(self) -> bool:
        return self.cap is not None and self.tool_calls > self.cap

    def observe(self, event: dict[str, Any]) -> bool:
        """Count one event; True when this event took the turn over its cap."""
        before = self.over
        kind = event.get("type")
        if kind == "system" and isinstance(event.get("model"), str):
            self.model = event["model"]
        elif kind == "assistant":
            message = event.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else ():
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    if isinstance(block.get("id"), str):
                        self._tools.add(block["id"])
                    else:
                        self._anonymous += 1
        elif kind == "result":
            usage = event.get("usage")
            if isinstance(usage, dict):
                self.cache_read_tokens = _count(usage.get("cache_read_input_tokens"))
                self.cache_creation_tokens = _count(usage.get("cache_creation_input_tokens"))
        return self.over and not before
