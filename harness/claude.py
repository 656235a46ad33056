"""What every claude session shares: settings, the turn's result, the binary, the tools'
names, and reading stream-json.

The session itself (one long-lived claude per agent, its control protocol, its turns)
is `harness.session`.

Measured with claude 2.1.330: `--output-format stream-json` needs `--verbose`; a resumed
session keeps the first `--append-system-prompt` unless `--system-prompt-snapshot off`,
which sessions therefore always pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyio.abc import ByteReceiveStream

from gitstore.names import MANAGER
from harness.confine import Confinement

__all__ = [
    "MANAGER_TOOLS",
    "TOOLS",
    "ClaudeMissingError",
    "ClaudeSettings",
    "EventCallback",
    "TurnResult",
    "find_claude",
    "hive_tool_names",
    "lines",
    "parse_line",
    "signal_group",
]

Event = dict[str, Any]
EventCallback = Callable[[Event], Awaitable[None]]

# The tools `harness.mcp_server` offers; kept here so the runner need not import mcp.
TOOLS = ("send", "recv")
MANAGER_TOOLS = (
    "request_spawn",
    "kill",
    "start",
    "restart",
    "request_apply_commit",
    "ask_operator",
    "list_agents",
)

_STDERR_TAIL = 8192
_MAX_LINE = 64 * 1024 * 1024


class ClaudeMissingError(RuntimeError):
    """Raised when the claude binary (`HIVE_CLAUDE_BIN`, else `claude` on PATH) is absent."""


@dataclass(frozen=True)
class ClaudeSettings:
    """How sessions run; tests pass tiny graces and a fake-pointing `env`."""

    binary: str | None = None
    extra_allowed_tools: Sequence[str] = ()
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    interrupt_grace: float = 2.0
    term_grace: float = 3.0
    drain_grace: float = 2.0
    turn_timeout: float | None = None
    # How long claude may take to answer a control request (initialize waits for start-up).
    control_timeout: float = 60.0
    # A closing session's claude gets this long to exit on its own after stdin closes.
    close_grace: float = 2.0
    # Ask the operator for a tool outside allowed_tools (`can_use_tool`), else deny it.
    ask_permissions: bool = True
    # Claude in a bwrap sandbox of its own (harness.confine), where the key is a file.
    confine: Confinement | None = None


@dataclass(frozen=True)
class TurnResult:
    """What one turn did; `exit_code` is set when claude exited (None: it still runs)."""

    exit_code: int | None
    result: Event | None
    duration_ms: int
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    cancelled: bool
    timed_out: bool
    stderr_tail: str
    session_id: str | None = None
    # claude answered neither the turn nor the interrupt and was killed (a hung session).
    hung: bool = False

    @property
    def ok(self) -> bool:
        if self.cancelled or self.exit_code not in (None, 0) or self.result is None:
            return False
        return not self.result.get("is_error", False)


def find_claude(binary: str | None = None) -> str:
    """Resolve the claude binary: explicit, else `HIVE_CLAUDE_BIN`, else `claude` on PATH."""
    name = binary or os.environ.get("HIVE_CLAUDE_BIN") or "claude"
    found = shutil.which(name)
    if found is None:
        raise ClaudeMissingError(
            f"claude binary {name!r} not found (set HIVE_CLAUDE_BIN or put claude on PATH)"
        )
    return found


def hive_tool_names(agent: str) -> list[str]:
    """The MCP tool names claude sees for this agent (`mcp__hive__<tool>`)."""
    tools = TOOLS + (MANAGER_TOOLS if agent == MANAGER else ())
    return [f"mcp__hive__{t}" for t in tools]


def parse_line(line: bytes) -> Event:
    """One stdout line as an event; anything that is not a JSON object is kept as raw."""
    text = line.decode(errors="replace").rstrip("\r")
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "raw", "text": text}
    return event if isinstance(event, dict) else {"type": "raw", "text": text}


def signal_group(pgid: int, sig: signal.Signals) -> None:
    # ESRCH: the group is already gone, which is what we wanted.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def lines(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
    """Yield complete lines (without newline); a final unterminated line is yielded too."""
    buf = bytearray()
    async for chunk in stream:
        buf.extend(chunk)
        while (nl := buf.find(b"\n")) >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if line.strip():
                yield line
        if len(buf) > _MAX_LINE:
            yield bytes(buf)
            buf.clear()
    if buf.strip():
        yield bytes(buf)
