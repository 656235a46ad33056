"""The harness's turn loop: inbox -> wake prompt -> one claude turn -> ack.

The loop long-polls `recv(lease=True)` on the agent's socket, so a message is leased to
this harness until the turn ends: it is acknowledged when the turn finishes (or when the
operator cancelled it), and released when claude failed, so a dead turn is delivered
again. A turn outlives a lost connection (hive-c0re restarting, say): the message it
woke on stays *unsettled* until the harness has reconnected, taken its lease back with
`reclaim`, and acknowledged or released it, so the turn is not run a second time.

Every stream-json event is kept in the history and published on `live` for the
agent's page. Turn state (idle / thinking / offline, with the last turn's duration, cost
and tokens) is reported to hive-c0re so the dashboard shows it too.

Operator controls: `cancel()` the running turn; `clear()` (the next turn starts a new
conversation); `compact()` (a `/compact` turn); `set_model()` (kept in
`HIVE_STATE/hyperhive-model`, read at every turn).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from controller.fanout import Fanout
from controller.protocol import Client, ProtocolError, connect_client
from harness.claude import ClaudeMissingError, ClaudeRunner, ClaudeSettings, TurnResult
from harness.confine import confinement_from_env
from harness.events import WAKE
from harness.history import History, TurnStatus, open_history
from harness.meter import TurnMeter
from reconcilers.backoff import Backoff

__all__ = ["Agent", "AgentConfig", "wake_prompt"]

log = logging.getLogger(__name__)

MODEL_FILE = "hyperhive-model"
FRESH_FILE = "hyperhive-fresh"
WAKE_BODY = 2000  # of a wake message's body kept in the turn's history


def _mcp_command() -> tuple[str, ...]:
    beside = Path(sys.executable).parent / "hive-ag3nt"
    if beside.exists():
        return (str(beside), "mcp")
    return (sys.executable, "-m", "harness.mcp_server")


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
            claude=ClaudeSettings(
                mcp_command=_mcp_command(),
                turn_timeout=float(timeout) if timeout else None,
                confine=confinement_from_env(env),
            ),
        )


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


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.live: Fanout[str] = Fanout()
        self.runner = ClaudeRunner(config.name, config.socket, config.state_dir, config.claude)
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
        return override or self.whoami.get("model")

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
        cancelled = self.runner.cancel()
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
        async with await open_history(self.config.state_dir) as history:
            self.history = history
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
                if result is not None and (result.ok or result.cancelled):
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

    async def _turn(self, message: dict[str, Any]) -> TurnResult | None:
        assert self.history is not None and self._client is not None
        self.whoami = await self._client.call("whoami")
        fresh = self.config.state_dir / FRESH_FILE
        resume = not fresh.exists() and bool(await self.history.turns(limit=1))
        fresh.unlink(missing_ok=True)
        prompt = wake_prompt(self.config.name, message)
        if self._compact:
            self._compact = False
            prompt = "/compact\n\n" + prompt
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
                self.runner.cancel()

        try:
            result = await self.runner.run_turn(
                prompt,
                on_event=on_event,
                model=self.model,
                resume=resume,
                append_system_prompt=self.whoami.get("prompt") or None,
                allowed_tools=list(self.whoami.get("allowed_tools") or ()),
            )
        except ClaudeMissingError as exc:
            await history.end_turn(turn_id, status="error")
            self.reason = str(exc)
            return None
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


def _failure(result: TurnResult) -> str:
    if result.timed_out:
        return "the turn hit its deadline"
    tail = result.stderr_tail.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
    return f"claude failed: {tail[0][:300]}"
