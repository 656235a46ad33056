"""A live claude session: one long-lived `claude --print --input-format stream-json`.

The process reads user turns and control messages on stdin and writes stream-json events
and control messages on stdout (`harness.control`). A turn is one user message written to
stdin; the `result` event that follows ends it. One reader task owns stdout: control
requests from claude (`mcp_message` for the hive tools served in-process, `can_use_tool`
for a permission question) each get a task of their own, so a tool call that waits (a
`recv`, the operator's answer) never blocks the stream; every other event goes to the
running turn's callback.

Ending a turn early (the operator's cancel, the turn's deadline) sends the `interrupt`
control request: claude stops and prints a `result` within ~80 ms here, and the session
stays warm. Only if no `result` follows within `interrupt_grace` does the old signal
escalation run (SIGINT, SIGTERM, SIGKILL to the process group), which ends the session;
so does closing it (stdin closed, then the same escalation after `close_grace`). A
session whose claude exits mid-turn ends that turn with `exit_code` set and no result,
which the turn loop treats as a failure (the message is delivered again).

Measured with claude 2.1.330 here: start -> `initialize` answered 0.3-0.9 s, and the
first turn is written right behind it (claude reads stdin in order); a claude that exits
before answering `initialize` makes that turn raise `SessionError` ("did not start"). A
user message on a warm session -> the API receives the request in ~25-40 ms; `total_cost_usd` in a
`result` is the session process's running total (the turn's cost is the difference),
while `usage` is the turn's own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

from harness import control
from harness.bash_sandbox import settings_args
from harness.claude import (
    ClaudeMissingError,
    ClaudeSettings,
    EventCallback,
    TurnResult,
    find_claude,
    hive_tool_names,
    lines,
    parse_line,
    signal_group,
)
from harness.confine import open_claude
from harness.orphans import reap_orphans
from harness.tools import SERVER_NAME, HiveTools

__all__ = [
    "PermissionAsker",
    "Session",
    "SessionError",
    "SessionSpec",
    "build_command",
    "open_session",
]

log = logging.getLogger(__name__)

Event = dict[str, Any]
# A tool outside allowed_tools: (tool name, input) -> (allowed, message for the model).
PermissionAsker = Callable[[str, Event], Awaitable[tuple[bool, str]]]

_STDERR_TAIL = 8192


class SessionError(RuntimeError):
    """Raised when a session cannot start or has ended (claude exited)."""


@dataclass(frozen=True)
class SessionSpec:
    """What a session is started with. A change of the model is a `set_model`; a change
    of anything else needs a new process (which resumes the same conversation)."""

    allowed_tools: tuple[str, ...] = ()
    append_system_prompt: str | None = None
    model: str | None = None
    resume: str | None = None  # the session id to resume
    continue_last: bool = False  # no id recorded but a conversation to continue

    def same_process(self, other: SessionSpec) -> bool:
        return (self.allowed_tools, self.append_system_prompt) == (
            other.allowed_tools,
            other.append_system_prompt,
        )


def build_command(
    binary: str,
    agent: str,
    spec: SessionSpec,
    *,
    ask_permissions: bool,
    extra_args: Sequence[str] = (),
) -> list[str]:
    mcp = {"mcpServers": {SERVER_NAME: {"type": "sdk", "name": SERVER_NAME}}}
    cmd = [binary, "--print", "--input-format", "stream-json", "--output-format", "stream-json"]
    cmd += ["--verbose", "--mcp-config", json.dumps(mcp), "--strict-mcp-config"]
    cmd += ["--allowedTools", ",".join([*hive_tool_names(agent), *spec.allowed_tools])]
    cmd += ["--system-prompt-snapshot", "off"]
    if ask_permissions:
        cmd += ["--permission-prompt-tool", "stdio"]
    if spec.model:
        cmd += ["--model", spec.model]
    if spec.resume:
        # The `=` form: a value starting with a dash can never pass for a flag.
        cmd.append(f"--resume={spec.resume}")
    elif spec.continue_last:
        cmd.append("--continue")
    if spec.append_system_prompt:
        cmd += ["--append-system-prompt", spec.append_system_prompt]
    return cmd + list(extra_args)


class _Turn:
    def __init__(self, on_event: EventCallback) -> None:
        self.on_event = on_event
        self.result: Event | None = None
        self.done = anyio.Event()
        self.stop = anyio.Event()
        self.cancelled = False
        self.timed_out = False
        self.hung = False


class Session:
    """One claude process; at most one turn at a time. Build it with `open_session`."""

    def __init__(
        self,
        process: Process,
        group: int,
        spec: SessionSpec,
        settings: ClaudeSettings,
        tools: HiveTools,
        ask: PermissionAsker | None,
        tg: TaskGroup,
    ) -> None:
        self.process = process
        self.group = group
        self.spec = spec
        self.settings = settings
        self.model = spec.model
        self.session_id: str | None = spec.resume
        self.started = time.monotonic()
        self.turns = 0
        self._tools = tools
        self._ask = ask
        self._tg = tg
        self._write_lock = anyio.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[anyio.Event, list[Event]]] = {}
        self._handlers: dict[str, anyio.CancelScope] = {}
        self._turn: _Turn | None = None
        self._cost_total = 0.0
        self.exited = anyio.Event()
        # Set when claude answered `initialize`, which the first turn does not wait for.
        self.initialized = anyio.Event()
        self.stderr: deque[int] = deque(maxlen=_STDERR_TAIL)

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    @property
    def busy(self) -> bool:
        return self._turn is not None

    @property
    def stderr_tail(self) -> str:
        return bytes(self.stderr).decode(errors="replace")

    # --- writing -------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        async with self._write_lock:
            try:
                await self.process.stdin.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise SessionError(f"claude's stdin is closed: {exc}") from exc

    async def request(self, subtype: str, **fields: Any) -> Event:
        """A control request to claude; its success response (SessionError otherwise)."""
        request_id = await self._send_request(subtype, fields)
        return await self._response(request_id, subtype)

    async def _send_request(self, subtype: str, fields: dict[str, Any]) -> str:
        request_id = f"hive_{next(self._ids)}"
        self._pending[request_id] = (anyio.Event(), [])
        try:
            await self._write(control.request(request_id, subtype, **fields))
        except BaseException:
            self._pending.pop(request_id, None)
            raise
        return request_id

    async def _response(self, request_id: str, subtype: str) -> Event:
        done, box = self._pending[request_id]
        try:
            with anyio.fail_after(self.settings.control_timeout):
                await _first(done.wait, self.exited.wait)
        except TimeoutError as exc:
            raise SessionError(f"claude did not answer {subtype}") from exc
        finally:
            self._pending.pop(request_id, None)
        if not box:
            raise SessionError(f"claude exited before answering {subtype}")
        response = box[0]
        if response.get("subtype") != "success":
            raise SessionError(f"{subtype} failed: {response.get('error')}")
        inner = response.get("response")
        return inner if isinstance(inner, dict) else {}

    async def set_model(self, model: str | None) -> None:
        if model == self.model:
            return
        await self.request("set_model", model=model or "default")
        self.model = model

    # --- turns ---------------------------------------------------------------------

    def cancel(self) -> bool:
        """Ask the running turn to stop (it ends `cancelled`); False when none runs."""
        if self._turn is None:
            return False
        self._turn.cancelled = True
        self._turn.stop.set()
        return True

    async def turn(self, prompt: str, on_event: EventCallback) -> TurnResult:
        """Run one turn; it ends at claude's `result`, at its exit, or when stopped."""
        if self._turn is not None:
            raise RuntimeError("a turn is already running in this session")
        if not self.alive:
            raise SessionError("the session has ended")
        turn = self._turn = _Turn(on_event)
        started = time.monotonic()
        try:
            await self._write(control.user_message(prompt))
            deadline = self.settings.turn_timeout
            with anyio.move_on_after(deadline if deadline is not None else float("inf")) as sc:
                await _first(turn.done.wait, turn.stop.wait, self.exited.wait)
            if sc.cancelled_caught:
                turn.timed_out = turn.cancelled = True
            if not turn.done.is_set() and self.alive:
                await self._interrupt(turn)
        except SessionError:
            pass  # claude went away; its exit code says why
        finally:
            self._turn = None
            if not turn.done.is_set() and self.alive:
                # Caller cancelled us mid-turn, or the interrupt went unanswered.
                turn.hung = turn.stop.is_set() or turn.timed_out
                with anyio.CancelScope(shield=True):
                    await self.kill()
        # claude answers `initialize` before it reads the turn: a turn that ended without
        # that answer is claude's start-up failure (an unknown --resume id, say).
        failed_start = not self.initialized.is_set()
        if not self.alive or failed_start:
            with anyio.move_on_after(self.settings.drain_grace):
                await self.process.wait()  # for its exit code
            if failed_start:
                if self.alive:
                    with anyio.CancelScope(shield=True):
                        await self.kill()
                raise SessionError(f"claude did not start: {self._why()}")
        self.turns += 1
        return self._result(turn, time.monotonic() - started)

    async def _interrupt(self, turn: _Turn) -> None:
        with anyio.move_on_after(self.settings.interrupt_grace):
            with contextlib.suppress(SessionError):
                await self.request("interrupt")
            await _first(turn.done.wait, self.exited.wait)

    def _result(self, turn: _Turn, elapsed: float) -> TurnResult:
        res = turn.result or {}
        usage = res.get("usage") if isinstance(res.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        cost = res.get("total_cost_usd")
        turn_cost = None
        if isinstance(cost, int | float):
            turn_cost = max(0.0, float(cost) - self._cost_total)
            self._cost_total = float(cost)
        return TurnResult(
            exit_code=None if self.alive else (self.process.returncode or -1),
            result=turn.result,
            duration_ms=int(elapsed * 1000),
            cost_usd=turn_cost,
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cancelled=turn.cancelled,
            timed_out=turn.timed_out,
            stderr_tail="" if self.alive else self.stderr_tail,
            session_id=self.session_id,
            hung=turn.hung,
        )

    def _why(self) -> str:
        tail = self.stderr_tail.strip().splitlines()[-1:]
        return tail[0][:300] if tail else f"exit code {self.process.returncode}"

    async def begin_initialize(self) -> str:
        """Write `initialize`; `initialized` is set once claude answers it."""
        return await self._send_request("initialize", {"hooks": None})

    async def finish_initialize(self, request_id: str) -> None:
        try:
            await self._response(request_id, "initialize")
        except SessionError as exc:
            log.warning("claude did not initialise: %s", exc)
            if self.alive:
                await self.kill()
            return
        self.initialized.set()

    # --- reading -------------------------------------------------------------------

    async def read_stdout(self) -> None:
        assert self.process.stdout is not None
        try:
            async for line in lines(self.process.stdout):
                await self._dispatch(parse_line(line))
        finally:
            self.exited.set()
            for done, _ in self._pending.values():
                done.set()

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr.extend(chunk)

    async def _dispatch(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "control_response":
            response = event.get("response")
            if isinstance(response, dict):
                waiter = self._pending.get(str(response.get("request_id")))
                if waiter is not None:
                    waiter[1].append(response)
                    waiter[0].set()
            return
        if kind == "control_request":
            req = control.parse_control_request(event)
            if req is not None:
                self._tg.start_soon(self._serve_request, req)
            return
        if kind == "control_cancel_request":
            scope = self._handlers.get(str(event.get("request_id")))
            if scope is not None:
                scope.cancel()
            return
        if isinstance(event.get("session_id"), str):
            self.session_id = event["session_id"]
        turn = self._turn
        if turn is None:
            return  # between turns (a late event of an interrupted one): nothing waits
        await turn.on_event(event)
        if kind == "result":
            turn.result = event
            turn.done.set()

    async def _serve_request(self, req: control.ControlRequest) -> None:
        with anyio.CancelScope() as scope:
            self._handlers[req.request_id] = scope
            try:
                answer = await self._answer(req)
            except Exception as exc:  # the model reads it; the session goes on
                log.warning("control request %s failed: %s", req.subtype, exc)
                reply = control.error_response(req.request_id, str(exc))
            else:
                reply = control.success_response(req.request_id, answer)
            finally:
                self._handlers.pop(req.request_id, None)
            with contextlib.suppress(SessionError):
                await self._write(reply)

    async def _answer(self, req: control.ControlRequest) -> Event:
        if req.subtype == "mcp_message":
            message = req.body.get("message")
            if req.body.get("server_name") != SERVER_NAME or not isinstance(message, dict):
                raise ValueError(f"no such MCP server: {req.body.get('server_name')!r}")
            reply = await self._tools.handle(message)
            return {"mcp_response": reply or {"jsonrpc": "2.0", "result": {}}}
        if req.subtype == "can_use_tool":
            tool = str(req.body.get("tool_name", ""))
            tool_input = req.body.get("input")
            tool_input = tool_input if isinstance(tool_input, dict) else {}
            if self._ask is None:
                return {"behavior": "deny", "message": f"{tool} is not allowed for this agent"}
            allowed, message = await self._ask(tool, tool_input)
            if allowed:
                return {"behavior": "allow", "updatedInput": tool_input}
            return {"behavior": "deny", "message": message}
        raise ValueError(f"unsupported control request {req.subtype!r}")

    # --- ending --------------------------------------------------------------------

    async def kill(self) -> None:
        """SIGINT, SIGTERM, SIGKILL to the group, each only if the last did not end it."""
        steps = (
            (signal.SIGINT, self.settings.interrupt_grace),
            (signal.SIGTERM, self.settings.term_grace),
        )
        for sig, grace in steps:
            signal_group(self.group, sig)
            with anyio.move_on_after(grace):
                await self.process.wait()
                return
        signal_group(self.group, signal.SIGKILL)
        await self.process.wait()


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as any of `waits` returns."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


@contextlib.asynccontextmanager
async def open_session(
    agent: str,
    socket_path: str,
    state_dir: Path,
    settings: ClaudeSettings,
    spec: SessionSpec,
    *,
    ask: PermissionAsker | None = None,
) -> AsyncIterator[Session]:
    """Start claude for `agent` and initialise it; the session ends with the block."""
    reap_orphans()
    binary = await anyio.to_thread.run_sync(find_claude, settings.binary)
    path = settings.env.get("PATH", os.environ.get("PATH", os.defpath))
    tools_all = [*spec.allowed_tools, *settings.extra_allowed_tools]
    bash_sandbox = await anyio.to_thread.run_sync(settings_args, tools_all, path)
    spec_run = SessionSpec(
        tuple(tools_all), spec.append_system_prompt, spec.model, spec.resume, spec.continue_last
    )
    cmd = build_command(
        binary,
        agent,
        spec_run,
        ask_permissions=ask is not None,
        extra_args=[*bash_sandbox, *settings.extra_args],
    )
    env = {**os.environ, **settings.env, "ENABLE_TOOL_SEARCH": "false"}
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        process, group = await open_claude(cmd, cwd=state_dir, env=env, confine=settings.confine)
    except FileNotFoundError as exc:
        raise ClaudeMissingError(f"cannot run {cmd[0]!r}: {exc}") from exc
    tools = HiveTools(agent, socket_path)
    # The block's own exception leaves from outside the task group, unwrapped: callers
    # see a SessionError or a ProtocolError, not an ExceptionGroup around it.
    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            session = Session(process, group, spec, settings, tools, ask, tg)
            tg.start_soon(session.read_stdout)
            tg.start_soon(session.read_stderr)
            # The first user turn goes right behind `initialize`, not after its answer:
            # claude reads stdin in order, and connects its MCP servers meanwhile
            # (measured: first request ~90 ms sooner).
            init = await session.begin_initialize()
            tg.start_soon(session.finish_initialize, init)
            try:
                yield session
            except BaseException as exc:
                error = exc
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _close(process, group, settings)
            await tools.aclose()
            reap_orphans()
    if error is not None:
        raise error


async def _close(process: Process, group: int, settings: ClaudeSettings) -> None:
    if process.returncode is None:
        if process.stdin is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await process.stdin.aclose()
        with anyio.move_on_after(settings.close_grace):
            await process.wait()
    if process.returncode is None:
        for sig, grace in ((signal.SIGTERM, settings.term_grace), (signal.SIGKILL, 5.0)):
            signal_group(group, sig)
            with anyio.move_on_after(grace):
                await process.wait()
                break
    signal_group(group, signal.SIGTERM)  # stragglers: a tool's background job
    await process.aclose()
