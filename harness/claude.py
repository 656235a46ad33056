"""The claude runner: one turn is one `claude --print` process.

A turn spawns claude in its own session (so every descendant, including the stdio MCP
server it launches, shares one process group), writes the wake prompt to its stdin,
parses stdout line by line as stream-json, and hands each event to a callback. The turn
ends when the process exits, not when a `result` event arrives: an interrupted claude
may never print one.

Stopping a turn escalates on the whole group: SIGINT, then SIGTERM, then SIGKILL, each
after a grace from `ClaudeSettings` (on SIGINT a hung turn ends in ~0.2 s here, exit
code 0). The same escalation runs, shielded, when the caller's own cancel scope cancels
`run_turn`, so no claude outlives the harness's interest in it. After claude exits,
stragglers in its group (a background shell, the MCP server) are sent SIGTERM.

Measured with claude 2.1.330: `--output-format stream-json` needs `--verbose`; a
`--continue` run keeps the first `--append-system-prompt` unless
`--system-prompt-snapshot off`, which the runner therefore always passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

from gitstore.names import MANAGER
from harness.bash_sandbox import settings_args
from harness.confine import Confinement, open_claude
from harness.orphans import reap_orphans

__all__ = [
    "MANAGER_TOOLS",
    "TOOLS",
    "ClaudeMissingError",
    "ClaudeRunner",
    "ClaudeSettings",
    "EventCallback",
    "TurnResult",
    "build_command",
    "find_claude",
    "hive_tool_names",
    "mcp_config",
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
    """How turns are run; tests pass tiny graces and a fake-pointing `env`."""

    binary: str | None = None
    mcp_command: Sequence[str] = ("hive-ag3nt", "mcp")
    extra_allowed_tools: Sequence[str] = ()
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    interrupt_grace: float = 2.0
    term_grace: float = 3.0
    drain_grace: float = 2.0
    turn_timeout: float | None = None
    # Claude in a bwrap sandbox of its own (harness.confine), where the key is a file.
    confine: Confinement | None = None


@dataclass(frozen=True)
class TurnResult:
    """What one claude process did."""

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

    @property
    def ok(self) -> bool:
        if self.cancelled or self.exit_code != 0 or self.result is None:
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


# What the stdio MCP server needs besides its socket when that is `tls://HOST:PORT`
# (the kubernetes runtime: `controller.protocol`, "Over TLS"); passed on explicitly so it
# does not depend on claude handing its environment down.
TLS_ENV = ("HIVE_TLS_CA", "HIVE_TLS_SERVER_NAME", "HIVE_TOKEN_FILE")


def mcp_config(
    agent: str,
    socket_path: str,
    command: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    env = {"HIVE_AGENT": agent, "HIVE_SOCKET": socket_path}
    if socket_path.startswith("tls://"):
        source = os.environ if environ is None else environ
        env.update({k: source[k] for k in TLS_ENV if source.get(k)})
    return {
        "mcpServers": {
            "hive": {
                "type": "stdio",
                "command": command[0],
                "args": list(command[1:]),
                "env": env,
            }
        }
    }


def build_command(
    binary: str,
    *,
    mcp_config_path: str,
    allowed_tools: Sequence[str],
    model: str | None,
    resume: bool,
    append_system_prompt: str | None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    cmd = [
        binary,
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--mcp-config",
        mcp_config_path,
        "--strict-mcp-config",
        "--allowedTools",
        ",".join(allowed_tools),
        "--system-prompt-snapshot",
        "off",
    ]
    if model:
        cmd += ["--model", model]
    if resume:
        cmd.append("--continue")
    if append_system_prompt:
        cmd += ["--append-system-prompt", append_system_prompt]
    cmd += list(extra_args)
    return cmd


def parse_line(line: bytes) -> Event:
    """One stdout line as an event; anything that is not a JSON object is kept as raw."""
    text = line.decode(errors="replace").rstrip("\r")
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "raw", "text": text}
    return event if isinstance(event, dict) else {"type": "raw", "text": text}


class ClaudeRunner:
    """Runs the turns of one agent; at most one turn at a time."""

    def __init__(
        self,
        agent: str,
        socket_path: str,
        state_dir: str | os.PathLike[str],
        settings: ClaudeSettings,
    ) -> None:
        self.agent = agent
        self.socket_path = socket_path
        self.state_dir = Path(state_dir)
        self.settings = settings
        self._stop: anyio.Event | None = None

    @property
    def running(self) -> bool:
        return self._stop is not None

    def cancel(self) -> bool:
        """Interrupt the running turn (it ends with `cancelled=True`); False if none runs."""
        if self._stop is None:
            return False
        self._stop.set()
        return True

    def write_mcp_config(self) -> Path:
        path = self.state_dir / ".hive" / "mcp.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        config = mcp_config(self.agent, self.socket_path, self.settings.mcp_command)
        path.write_text(json.dumps(config, indent=2))
        return path

    async def run_turn(
        self,
        prompt: str,
        *,
        on_event: EventCallback,
        model: str | None = None,
        resume: bool = False,
        append_system_prompt: str | None = None,
        allowed_tools: Sequence[str] = (),
    ) -> TurnResult:
        """One turn; `allowed_tools` are the agent's own (agent.toml), beside its hive tools."""
        if self._stop is not None:
            raise RuntimeError(f"{self.agent}: a turn is already running")
        reap_orphans()
        binary = await anyio.to_thread.run_sync(find_claude, self.settings.binary)
        config_path = await anyio.to_thread.run_sync(self.write_mcp_config)
        path = self.settings.env.get("PATH", os.environ.get("PATH", os.defpath))
        bash_sandbox = await anyio.to_thread.run_sync(settings_args, allowed_tools, path)
        cmd = build_command(
            binary,
            mcp_config_path=str(config_path),
            allowed_tools=[
                *hive_tool_names(self.agent),
                *allowed_tools,
                *self.settings.extra_allowed_tools,
            ],
            model=model,
            resume=resume,
            append_system_prompt=append_system_prompt,
            extra_args=[*bash_sandbox, *self.settings.extra_args],
        )
        env = {**os.environ, **self.settings.env, "ENABLE_TOOL_SEARCH": "false"}
        self._stop = anyio.Event()
        try:
            return await self._run(cmd, env, prompt, on_event, self._stop)
        finally:
            self._stop = None

    async def _run(
        self,
        cmd: list[str],
        env: dict[str, str],
        prompt: str,
        on_event: EventCallback,
        stop: anyio.Event,
    ) -> TurnResult:
        started = time.monotonic()
        try:
            process, group = await open_claude(
                cmd, cwd=self.state_dir, env=env, confine=self.settings.confine
            )
        except FileNotFoundError as exc:
            raise ClaudeMissingError(f"cannot run {cmd[0]!r}: {exc}") from exc
        state = _TurnState()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._feed, process, prompt)
                tg.start_soon(self._read_stdout, process, on_event, state)
                tg.start_soon(self._read_stderr, process, state)
                tg.start_soon(self._watch, process, group, stop, state)
                await process.wait()
                # A grandchild may hold stdout open after claude exits; do not wait for it.
                with anyio.move_on_after(self.settings.drain_grace):
                    await state.stdout_done.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    state.cancelled = True
                    await self._escalate(process, group)
                _signal_group(group, signal.SIGTERM)
                await process.aclose()
                reap_orphans()
        return state.result(process.returncode, time.monotonic() - started)

    async def _feed(self, process: Process, prompt: str) -> None:
        assert process.stdin is not None
        try:
            await process.stdin.send(prompt.encode())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # claude exited before reading its prompt; its exit code tells why
        finally:
            await process.stdin.aclose()

    async def _read_stdout(
        self, process: Process, on_event: EventCallback, state: _TurnState
    ) -> None:
        assert process.stdout is not None
        async for line in _lines(process.stdout):
            event = parse_line(line)
            state.observe(event)
            await on_event(event)
        state.stdout_done.set()

    async def _read_stderr(self, process: Process, state: _TurnState) -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            state.stderr.extend(chunk)

    async def _watch(
        self, process: Process, group: int, stop: anyio.Event, state: _TurnState
    ) -> None:
        deadline = self.settings.turn_timeout
        with anyio.move_on_after(deadline if deadline is not None else float("inf")) as scope:
            await stop.wait()
        state.timed_out = scope.cancelled_caught
        state.cancelled = True
        await self._escalate(process, group)

    async def _escalate(self, process: Process, group: int) -> None:
        """SIGINT, SIGTERM, SIGKILL to the group, each only if the last did not end claude."""
        steps = (
            (signal.SIGINT, self.settings.interrupt_grace),
            (signal.SIGTERM, self.settings.term_grace),
        )
        for sig, grace in steps:
            _signal_group(group, sig)
            with anyio.move_on_after(grace):
                await process.wait()
                return
        _signal_group(group, signal.SIGKILL)
        await process.wait()


class _TurnState:
    def __init__(self) -> None:
        self.result_event: Event | None = None
        self.session_id: str | None = None
        self.cancelled = False
        self.timed_out = False
        self.stdout_done = anyio.Event()
        self.stderr: deque[int] = deque(maxlen=_STDERR_TAIL)

    def observe(self, event: Event) -> None:
        if isinstance(event.get("session_id"), str):
            self.session_id = event["session_id"]
        if event.get("type") == "result":
            self.result_event = event

    def result(self, exit_code: int | None, elapsed: float) -> TurnResult:
        res = self.result_event or {}
        usage = res.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        cost = res.get("total_cost_usd")
        return TurnResult(
            exit_code=exit_code,
            result=self.result_event,
            duration_ms=int(elapsed * 1000),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            input_tokens=_int_or_none(usage.get("input_tokens")),
            output_tokens=_int_or_none(usage.get("output_tokens")),
            cancelled=self.cancelled,
            timed_out=self.timed_out,
            stderr_tail=bytes(self.stderr).decode(errors="replace"),
            session_id=self.session_id,
        )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # ESRCH: the group is already gone, which is what we wanted.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _lines(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
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
