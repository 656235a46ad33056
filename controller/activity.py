"""What each agent did lately, as a person looks for it on `/logs`: turns started and
ended (with status, time and cost), errors, exits and crashes, restarts, holds and the
operator's lifecycle commands.

Read off the bus into a bounded ring per agent (in memory: turn states are not stored
anywhere else in hive-c0re, and this is a view, not a record); the page merges in the
agent's reconcile runs, which the store keeps across restarts.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

from controller.bus import Bus, Event, EventType

__all__ = ["Activity", "ActivityLine", "run_line", "run_verdict"]

WATCHED = (
    EventType.AGENT_TURN,
    EventType.AGENT_EXITED,
    EventType.AGENT_SOCKET_FAILED,
    EventType.AGENT_STATUS,
    EventType.AGENT_HOLD,
    EventType.AGENT_START,
    EventType.AGENT_STOP,
    EventType.AGENT_RESTART,
    EventType.AGENT_KILL,
)


@dataclass(frozen=True)
class ActivityLine:
    ts: str
    kind: str  # turn | error | crash | life | reconcile
    text: str


class Activity:
    def __init__(self, bus: Bus, per_agent: int = 500, agents: int = 2000) -> None:
        self.bus = bus
        self.per_agent = per_agent
        self.agents = agents
        self._lines: OrderedDict[str, deque[ActivityLine]] = OrderedDict()
        self._thinking: dict[str, str] = {}  # agent -> when its turn started
        self._stalled: set[str] = set()

    def lines(self, agent: str) -> list[ActivityLine]:
        return list(self._lines.get(agent, ()))

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with self.bus.subscribe(types=WATCHED) as sub:
                async for event in sub:
                    self.see(event)

    def see(self, event: Event) -> None:
        d = event.data
        agent = str(d.get("agent") or d.get("name") or "")
        if not agent:
            return
        line = self._line(event, agent)
        if line is None:
            return
        ring = self._lines.get(agent)
        if ring is None:
            ring = self._lines[agent] = deque(maxlen=self.per_agent)
            while len(self._lines) > self.agents:
                self._lines.popitem(last=False)
        ring.append(line)

    def _line(self, event: Event, agent: str) -> ActivityLine | None:
        d, ts = event.data, event.ts
        if event.type == EventType.AGENT_TURN:
            state = d.get("state")
            if state == "thinking":
                self._thinking[agent] = ts
                return ActivityLine(ts, "turn", "▶ turn started")
            started = self._thinking.pop(agent, None)
            last = d.get("last_turn")
            reason = str(d.get("reason") or "")
            if started is not None and isinstance(last, dict):
                cost = last.get("cost_usd")
                money = f" · ${cost:.4f}" if isinstance(cost, int | float) else ""
                ms = last.get("duration_ms")
                took = f" · {ms / 1000:.1f}s" if isinstance(ms, int | float) else ""
                status = str(last.get("status") or "?")
                kind = "turn" if status in ("ok", "cancelled") else "error"
                return ActivityLine(ts, kind, f"■ turn {status}{took}{money}")
            if state == "offline":
                return ActivityLine(ts, "error", f"✗ offline: {reason or 'no reason given'}")
            return None
        if event.type == EventType.AGENT_EXITED:
            return ActivityLine(ts, "crash", "✗ its harness exited")
        if event.type == EventType.AGENT_SOCKET_FAILED:
            return ActivityLine(ts, "error", f"✗ socket: {d.get('error', '')}")
        if event.type == EventType.AGENT_STATUS:
            stalled = bool(d.get("stalled"))
            if stalled and agent not in self._stalled:
                self._stalled.add(agent)
                return ActivityLine(ts, "crash", f"✗ stalled: {d.get('message', '')}")
            if not stalled:
                self._stalled.discard(agent)
            return None
        if event.type == EventType.AGENT_HOLD:
            hold = d.get("hold")
            return ActivityLine(ts, "life", f"‖ held: {hold}" if hold else "▷ hold cleared")
        verb = str(event.type).split(".", 1)[1]
        return ActivityLine(ts, "life", f"⌁ {verb} by the operator")


def run_verdict(run: dict[str, object]) -> str:
    """What a reconcile run came to, as a person reads it: a restart by the reconciler
    is a crash recovered, a backoff is waiting out a crash; neither is plain `ok`."""
    if run.get("outcome") != "ok":
        return "error"
    return {"backoff": "backoff", "restart": "crash"}.get(str(run.get("action")), "ok")


def run_line(run: dict[str, object]) -> ActivityLine:
    verdict = run_verdict(run)
    kind = {"ok": "reconcile", "backoff": "life", "crash": "crash"}.get(verdict, "error")
    action = str(run.get("action"))
    text = f"⟳ reconcile {action}" + ("" if verdict in ("ok", action) else f": {verdict}")
    if run.get("message"):
        text += f" · {run['message']}"
    return ActivityLine(str(run.get("started_at", "")), kind, text)
