"""The harness's turn loop: inbox -> wake prompt -> a turn of the live session -> ack.

The loop long-polls `recv(lease=True)` on the agent's socket, so a message is leased to
this harness until the turn ends: it is acknowledged when the turn finishes (or when the
operator cancelled it), and released when claude failed, so a dead turn is delivered
again. A turn is one user message to the agent's long-lived claude (`harness.session`,
kept warm by `harness.warm`); its `result` event ends it. The conversation's session id
is kept in `HIVE_STATE/hyperhive-session`, so a new claude (after an idle window, a
crash, a harness restart) resumes it. Every stream-json event is kept in the history and
published on `live` for the agent's page. Turn state (idle / thinking / offline, with the
last turn's duration, cost and tokens) is reported to hive-c0re so the dashboard shows
it too.

A turn outlives a lost connection (hive-c0re restarting, say): the message it woke on
stays *unsettled* until the harness has reconnected, taken its lease back with
`reclaim`, and acknowledged or released it, so the turn is not run a second time.

Operator controls: `cancel()` the running turn (claude's `interrupt`); `clear()` (the
next turn starts a new session and conversation); `compact()` (at the next message,
`/compact` runs as a step of its own, then the message is an ordinary turn);
`set_model()` (kept in `HIVE_STATE/hyperhive-model`, applied with `set_model` on the warm
session at the next turn).

A tool the agent's `allowed_tools` does not grant becomes a question to the operator
(`ask_permission` on the agent socket, which answers once the operator did, or the
question expired): claude waits for it inside the same turn.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from controller.fanout import Fanout
from controller.protocol import Client, ProtocolError, connect_client
from harness.claude import ClaudeMissingError, ClaudeSettings, EventCallback, TurnResult
from harness.confine import confinement_from_env
from harness.events import WAKE
from harness.history import History, TurnStatus, open_history
from harness.meter import TurnMeter
from harness.session import Session, SessionError, SessionSpec, open_session
from harness.warm import WarmSession
from reconcilers.backoff import Backoff

__all__ = ["Agent", "AgentConfig", "permission_summary", "wake_prompt"]

log = logging.getLogger(__name__)

MODEL_FILE = "hyperhive-model"
FRESH_FILE = "hyperhive-fresh"
SESSION_FILE = "hyperhive-session"
_MAX_DETAIL = 2000
WAKE_BODY = 2000  # of a wake message's body kept in the turn's history


@dataclass(frozen=True)
class AgentConfig:
    name: str
    socket: str
    state_dir: Path
    # The agent page: a listening socket inherited from hive-c0re (process runtime), or
    # a unix socket path to bind (nixos runtime); neither: no page.
    web_fd: int | None = None
    web_socket: str | None = None
    recv_wait: float = 180.0
    retry_base: float = 1.0
    retry_cap: float = 60.0
    # How long a session stays warm after its last turn (`HIVE_WARM_IDLE`).
    warm_idle: float = 300.0
    claude: ClaudeSettings = field(default_factory=ClaudeSettings)
    # The credential hive-c0re handed this harness (harness.credential); never printed.
    key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AgentConfig:
        env = dict(os.environ if env is None else env)
        fd = env.get("HIVE_WEB_FD", "")
        timeout = env.get("HIVE_TURN_TIMEOUT", "1800")
        return cls(
            name=env["HIVE_AGENT"],
            socket=env["HIVE_SOCKET"],
            state_dir=Path(env.get("HIVE_STATE", ".")),
            web_fd=int(fd) if fd.isascii() and fd.isdigit() else None,
            web_socket=env.get("HIVE_WEB_SOCKET") or None,
            retry_base=float(env.get("HIVE_RETRY_BASE", "1.0")),
            warm_idle=_seconds(env.get("HIVE_WARM_IDLE", ""), 300.0),
            claude=ClaudeSettings(
                turn_timeout=float(timeout) if timeout else None,
                confine=confinement_from_env(env),
            ),
        )


def _seconds(text: str, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        value = default
    if not 0 < value < float("inf"):
        log.warning("ignoring a bad number of seconds %r; using %g", text, default)
        return default
    return value


def wake_prompt(me: str, message: dict[str, Any]) -> str:
    sender = message["sender"]
    if message.get("kind") == "operator_answered":
        return (
            f"The operator resolved one of your questions (message #{message['id']}, "
            f"{message['created_at']}):\n\n{message['body']}\n\n"
            "Act on it; use the hive tools (send, recv, ...) as needed."
        )
    how = (
        "Answer the operator in your reply text (they read this page)."
        if sender == "operator"
        else f'Reply with the `send` tool (to: "{sender}") if an answer is needed.'
    )
    return (
        f"You are {me}, an agent of the hive. New message #{message['id']} from {sender} "
        f"at {message['created_at']}:\n\n{message['body']}\n\n{how} "
        "Use `recv` to check for more messages."
    )


def permission_summary(tool: str, tool_input: dict[str, Any]) -> str:
    """What the operator reads: the command of a Bash call, the path of a file tool,
    else the input as JSON; cut to a length a question card shows."""
    for key in ("command", "file_path", "path", "url", "pattern"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            detail = value
            break
    else:
        detail = json.dumps(tool_input, ensure_ascii=False, sort_keys=True)
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.live: Fanout[str] = Fanout()
        self.settings = config.claude
        self.warm = WarmSession(self._open_session, idle=config.warm_idle, slot=self._warm_slot)
        self.history: History | None = None
        self.state = "offline"
        self.reason = "starting"
        self.since = time.time()
        self.last_turn: dict[str, Any] | None = None
        self.whoami: dict[str, Any] = {}
        self._client: Client | None = None
        self._control: Client | None = None
        self._compact = False
        # The wake message whose turn ended but whose ack/release has not reached
        # hive-c0re yet, with the verb it is owed.
        self._unsettled: tuple[int, str] | None = None
        self._backoff = Backoff(config.retry_base, config.retry_cap)

    # --- operator controls ---------------------------------------------------------

    @property
    def model(self) -> str | None:
        path = self.config.state_dir / MODEL_FILE
        try:
            override = path.read_text().strip()
        except OSError:
            override = ""
        return override or self.whoami.get("model") or None

    def set_model(self, model: str | None) -> None:
        path = self.config.state_dir / MODEL_FILE
        if model:
            path.write_text(model + "\n")
        else:
            path.unlink(missing_ok=True)
        self.live.publish("control", action="model", model=self.model)

    def clear(self) -> None:
        (self.config.state_dir / FRESH_FILE).touch()
        self.live.publish("control", action="clear")

    def compact(self) -> None:
        self._compact = True
        self.live.publish("control", action="compact")

    def cancel(self) -> bool:
        session = self.warm.session
        cancelled = session is not None and session.cancel()
        if cancelled:
            self.live.publish("control", action="cancel")
        return cancelled

    async def _connect(self) -> Client:
        """A connection to the agent socket, as the harness when it holds its key (also
        when the client reconnects after an idle close)."""
        hello = [("auth", {"key": self.config.key})] if self.config.key else []
        return await connect_client(self.config.socket, hello)

    async def call(self, cmd: str, **args: Any) -> Any:
        """A control-plane call (page actions) on a connection of its own."""
        if self._control is None:
            self._control = await self._connect()
        try:
            return await self._control.call(cmd, **args)
        except ProtocolError as exc:
            if exc.code in ("closed", "unreachable"):
                self._control = None
            raise

    # --- the session's callbacks ---------------------------------------------------

    @asynccontextmanager
    async def _open_session(self, spec: SessionSpec) -> AsyncIterator[Session]:
        ask = self._ask_permission if self.settings.ask_permissions else None
        async with open_session(
            self.config.name,
            self.config.socket,
            self.config.state_dir,
            self.settings,
            spec,
            ask=ask,
        ) as session:
            self.live.publish("session", action="started", resume=spec.resume)
            yield session

    async def _ask_permission(self, tool: str, tool_input: dict[str, Any]) -> tuple[bool, str]:
        """The operator decides on a tool call outside allowed_tools (waits for them)."""
        detail = permission_summary(tool, tool_input)
        self.live.publish("permission", tool=tool, detail=detail, state="asked")
        try:
            client = await self._connect()
            async with client:
                answer = await client.call("ask_permission", tool=tool, detail=detail)
        except (ProtocolError, OSError) as exc:
            log.warning("permission for %s not asked: %s", tool, exc)
            return False, f"{tool} was not allowed: the operator could not be asked ({exc})"
        allowed = bool(answer.get("allow"))
        status = str(answer.get("status", ""))
        self.live.publish("permission", tool=tool, detail=detail, state=status, allow=allowed)
        if allowed:
            return True, ""
        why = {"expired": "nobody answered in time"}.get(status, f"the operator said {status}")
        return False, f"The operator did not allow {tool} ({why}). Do not retry it."

    async def _warm_slot(self) -> str:
        """Hold this host's warm-session slot; returns when hive-c0re wants it back."""
        client = await self._connect()
        async with client:
            answer = await client.call("warm")
        return str(answer.get("reason", ""))

    # --- the loop ------------------------------------------------------------------

    async def _report(self, state: str, reason: str = "") -> None:
        self.state, self.reason = state, reason
        self.since = time.time()
        self.live.publish(
            "state", state=state, reason=reason, model=self.model, last_turn=self.last_turn
        )
        if self._client is not None:
            try:
                await self._client.call(
                    "turn_state",
                    state=state,
                    reason=reason,
                    model=self.model,
                    last_turn=self.last_turn,
                )
            except ProtocolError as exc:
                log.warning("turn_state not reported: %s", exc)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        async with (
            await open_history(self.config.state_dir) as history,
            anyio.create_task_group() as tg,
        ):
            self.history = history
            await tg.start(self.warm.serve)
            task_status.started()
            failures = 0
            while True:
                try:
                    await self._connected_loop()
                    failures = 0
                except (ProtocolError, OSError, anyio.BrokenResourceError) as exc:
                    failures += 1
                    self._client = None
                    await self._report("offline", f"hive socket: {exc}")
                    # A lost socket waits one doubling longer than a failed turn does.
                    await anyio.sleep(self._backoff.delay(failures + 1))

    async def _connected_loop(self) -> None:
        self._client = await self._connect()
        async with self._client:
            await self._settle_unsettled()
            self.whoami = await self._client.call("whoami")
            await self._report("idle")
            failures = 0
            while True:
                message = await self._client.call(
                    "recv", wait_seconds=self.config.recv_wait, lease=True
                )
                if message is None:
                    continue
                self.live.publish("wake", message=message)
                result = await self._turn(message)
                if result is not None and _handled(result):
                    await self._settle(message["id"], "ack")
                    failures = 0
                    await self._report("idle")
                    continue
                await self._settle(message["id"], "release")
                failures += 1
                delay = self._backoff.delay(failures)
                reason = self.reason if result is None else _failure(result)
                await self._report("offline", f"{reason}; retrying in {delay:.0f}s")
                await anyio.sleep(delay)

    async def _settle(self, message_id: int, verb: str) -> None:
        """`ack` or `release` the wake message; if the connection is lost on the way,
        the next connection reclaims and settles it."""
        assert self._client is not None
        self._unsettled = (message_id, verb)
        await self._client.call(verb, id=message_id)
        self._unsettled = None

    async def _settle_unsettled(self) -> None:
        if self._unsettled is None:
            return
        assert self._client is not None
        message_id, verb = self._unsettled
        got = await self._client.call("reclaim", ids=[message_id])
        if message_id in got["reclaimed"]:
            await self._client.call(verb, id=message_id)
        else:  # settled already, by the call whose answer was lost
            log.info("message %d was settled before the connection was lost", message_id)
        self._unsettled = None

    async def _spec(self) -> SessionSpec:
        """The session this turn wants; a pending /clear closes the warm one first."""
        assert self.history is not None
        state = self.config.state_dir
        fresh = state / FRESH_FILE
        if fresh.exists():
            await self.warm.cold("the conversation was cleared")
            (state / SESSION_FILE).unlink(missing_ok=True)
            fresh.unlink(missing_ok=True)
            resume, continue_last = None, False
        else:
            try:
                resume = (state / SESSION_FILE).read_text().strip() or None
            except OSError:
                resume = None
            # A conversation from before the session id was recorded: claude's own last.
            continue_last = resume is None and bool(await self.history.turns(limit=1))
        return SessionSpec(
            allowed_tools=tuple(self.whoami.get("allowed_tools") or ()),
            append_system_prompt=self.whoami.get("prompt") or None,
            model=self.model,
            resume=resume,
            continue_last=continue_last,
        )

    async def _turn(self, message: dict[str, Any]) -> TurnResult | None:
        assert self.history is not None and self._client is not None
        self.whoami = await self._client.call("whoami")
        turn_id = await self.history.start_turn(message["id"])
        started_at = datetime.now(UTC).isoformat(timespec="microseconds")
        history = self.history
        # The message this turn answers, first in its history: a backfilled page shows it.
        wake = {
            "type": WAKE,
            "message_id": message.get("id"),
            "sender": str(message.get("sender", "")),
            "body": str(message.get("body", ""))[:WAKE_BODY],
        }
        stored = await history.append(turn_id, wake)
        self.live.publish("event", id=stored.id, turn=turn_id, event=wake)
        await self._report("thinking")
        cap = self.whoami.get("max_tool_calls_per_turn")
        meter = TurnMeter(cap if isinstance(cap, int) else None)

        async def on_event(event: dict[str, Any]) -> None:
            stored = await history.append(turn_id, event)
            self.live.publish("event", id=stored.id, turn=turn_id, event=event)
            if meter.observe(event):  # over the tool-call cap: interrupt the turn
                log.warning("%s: turn over %s tool calls; interrupting", self.config.name, cap)
                self.cancel()

        spec = await self._spec()
        try:
            try:
                session, result = await self._attempt(spec, message, on_event)
            except SessionError as exc:
                if spec.resume is None and not spec.continue_last:
                    raise
                # claude refuses a session it has no transcript of (its config dir was
                # reset, say): the conversation is gone, the message must not be.
                log.warning("cannot resume the conversation (%s); starting a new one", exc)
                (self.config.state_dir / SESSION_FILE).unlink(missing_ok=True)
                spec = dataclasses.replace(spec, resume=None, continue_last=False)
                session, result = await self._attempt(spec, message, on_event)
        except (ClaudeMissingError, SessionError) as exc:
            await history.end_turn(turn_id, status="error")
            self.reason = str(exc)
            return None
        self._record_session(session)
        self.warm.touch()
        status: TurnStatus = (
            "ok"
            if result.ok
            else "cancelled"
            if result.cancelled
            else "timeout"
            if result.timed_out
            else "error"
        )
        await history.end_turn(
            turn_id,
            status=status,
            duration_ms=result.duration_ms,
            cost_usd=result.cost_usd,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        self.last_turn = {
            "duration_ms": result.duration_ms,
            "cost_usd": result.cost_usd,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "status": status,
            # For hive-c0re's accounting (controller.usage): which turn, and the rest.
            "id": turn_id,
            "started_at": started_at,
            "cache_read_tokens": meter.cache_read_tokens,
            "cache_creation_tokens": meter.cache_creation_tokens,
            "model": meter.model or self.model,
            "tool_calls": meter.tool_calls,
            "interrupted": "tool_calls" if meter.over else None,
        }
        self.live.publish("turn", turn=turn_id, **self.last_turn)
        return result

    async def _attempt(
        self, spec: SessionSpec, message: dict[str, Any], on_event: EventCallback
    ) -> tuple[Session, TurnResult]:
        session = await self.warm.acquire(spec)
        if self._compact:
            self._compact = False
            # Its own step: what follows `/compact` in one message would become the
            # compaction's instructions, and that message would never be handled.
            compacted = await session.turn("/compact", on_event)
            self._record_session(session)
            if compacted.cancelled:
                return session, compacted  # the operator's /cancel covers the message too
            if not compacted.ok:
                log.warning("/compact did not succeed; the message is handled anyway")
        return session, await session.turn(wake_prompt(self.config.name, message), on_event)

    def _record_session(self, session: Session) -> None:
        if session.session_id:
            (self.config.state_dir / SESSION_FILE).write_text(session.session_id + "\n")


def _handled(result: TurnResult) -> bool:
    """Acknowledge the message: the turn ended, or the operator cancelled it, or it ran
    past its deadline in a claude that still answered. A crashed or hung claude (killed
    at the deadline) is a failure: the message is delivered again to a new session."""
    if result.ok:
        return True
    return result.cancelled and not (result.timed_out and result.hung)


def _failure(result: TurnResult) -> str:
    if result.hung:
        return "claude hung past the turn's deadline and was killed"
    if result.timed_out:
        return "the turn hit its deadline"
    tail = result.stderr_tail.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
    return f"claude failed: {tail[0][:300]}"
