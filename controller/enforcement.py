"""Enforcement of the hive's policy (`hive.toml`, `gitstore.policy`) that a person can see.

After every finished turn is recorded (`controller.usage`), the agent's limits are
checked: an agent whose spend today reached its `budget_usd_per_day` (or the hive's
spend reached `hive_budget_usd_per_day`: then every agent), or whose turns within the
last hour reached `max_turns_per_hour`, is *held*, like `kill` holds it: `hold` is
`budget` or `turns` (in `hive agents`, the dashboard and `hive events` as `agent.hold`,
with an `agent.limited` event saying which limit and why), and it is stopped. Stopping
ends a running turn (its message is released, not acknowledged) and keeps the inbox
intact: nothing is lost, it waits.

A limit hold is lifted by the operator (`hive start NAME`: the agent is then excused
from that limit until its window ends, the UTC day for the budget, an hour for turns),
by an approved change that raises the limit, or by time: the next UTC day for the
budget, a last hour with room again for turns. `review()` decides that; it runs when
applied `main` moves (`wake()`) and every `poll` seconds.

The tool-call cap is enforced in the harness (it interrupts the turn); the turn it
reports says so and the operator sees an `agent.limited` event. Rates (`send`,
`ask_operator`) are token buckets in `controller.quotas`; a refusal is published here as
`agent.rate_limited`, once per burst (not once per refused call).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

import anyio

from controller.bus import Bus, EventType
from controller.quotas import CountRate, RateLimitError
from controller.records import StoreRecords
from controller.usage import FinishedTurn, Usage
from gitstore.policy import AgentLimits, Policy
from reconcilers.clock import Clock, wait_event
from reconcilers.runtime import ContainerError, Runtime

__all__ = ["LIMIT_HOLDS", "Enforcer"]

log = logging.getLogger(__name__)

LIMIT_HOLDS = ("budget", "turns")
HOUR = 3600.0


class Enforcer:
    def __init__(
        self,
        usage: Usage,
        records: StoreRecords,
        runtime: Runtime,
        bus: Bus,
        clock: Clock,
        *,
        policy: Callable[[], Policy],
        limits_for: Callable[[str], Awaitable[AgentLimits]],
        names: Callable[[], Iterable[str]],
        released: Callable[[str], object],
        poll: float = 30.0,
    ) -> None:
        self.usage = usage
        self.records = records
        self.runtime = runtime
        self.bus = bus
        self.clock = clock
        self.policy = policy
        self.limits_for = limits_for
        self.names = names
        self.released = released
        self.poll = poll
        self.asks = CountRate("question", "hour", clock)
        # agent -> (limit, until): `hive start` on a limit hold excuses it for its window.
        self._excused: dict[str, tuple[str, datetime]] = {}
        self._refused: set[tuple[str, str]] = set()
        self._wake = anyio.Event()
        self._lock = anyio.Lock()

    # --- turns ---------------------------------------------------------------------

    async def turn_finished(self, agent: str, report: dict[str, object]) -> FinishedTurn | None:
        """Record the finished turn a harness reported (once) and check the agent's limits."""
        turn = FinishedTurn.of(report)
        if turn is None or not await self.usage.record(agent, turn):
            return None
        if turn.interrupted == "tool_calls":
            limits = await self.limits_for(agent)
            self.bus.publish(
                EventType.AGENT_LIMITED,
                agent=agent,
                limit="tool_calls",
                message=f"the turn made {turn.tool_calls} tool calls, the limit is "
                f"{limits.max_tool_calls_per_turn}: it was interrupted",
            )
        await self.check(agent)
        cap = self.policy().hive_budget_usd_per_day
        if cap is not None and await self.usage.spent_today() >= cap:
            for name in self.names():  # the hive's budget is spent: every agent is held
                if name != agent:
                    await self.check(name)
        return turn

    async def over(self, agent: str) -> tuple[str, str] | None:
        """The limit hold `agent` is due, and why; None when it is within its limits."""
        limits = await self.limits_for(agent)
        excused = self._excused.get(agent)
        if excused is not None and excused[1] <= self.clock.utcnow():
            del self._excused[agent]
            excused = None
        waived = excused[0] if excused is not None else None
        if waived != "budget":
            if limits.budget_usd_per_day is not None:
                spent = await self.usage.spent_today(agent)
                if spent >= limits.budget_usd_per_day:
                    return "budget", (
                        f"spent ${spent:.4f} today (UTC), its budget is "
                        f"${limits.budget_usd_per_day:.2f} a day"
                    )
            cap = self.policy().hive_budget_usd_per_day
            if cap is not None:
                spent = await self.usage.spent_today()
                if spent >= cap:
                    return "budget", (
                        f"the hive spent ${spent:.4f} today (UTC), its budget is ${cap:.2f} a day"
                    )
        if waived != "turns":
            turns = await self.usage.turns_within(agent, HOUR)
            if turns >= limits.max_turns_per_hour:
                return "turns", (
                    f"ran {turns} turns within the last hour, the limit is "
                    f"{limits.max_turns_per_hour}"
                )
        return None

    async def check(self, agent: str) -> str | None:
        """Hold and stop `agent` if it crossed a limit (and holds nothing yet); the hold."""
        async with self._lock:
            if await self.records.hold(agent) is not None:
                return None
            found = await self.over(agent)
            if found is None:
                return None
            hold, why = found
            await self.records.set_hold(agent, hold)
        self.bus.publish(EventType.AGENT_LIMITED, agent=agent, limit=hold, hold=hold, message=why)
        log.info("%s held (%s): %s", agent, hold, why)
        try:
            await self.runtime.stop(agent)
        except ContainerError as exc:
            log.warning("%s held, but stopping it failed: %s", agent, exc)
        self.released(agent)  # the reconciler writes the Held status
        return hold

    def excuse(self, agent: str, hold: str) -> None:
        """The operator started an agent held by a limit: excused until its window ends."""
        if hold not in LIMIT_HOLDS:
            return
        now = self.clock.utcnow()
        if hold == "budget":
            until = datetime.combine(
                now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo
            )
        else:
            until = now + timedelta(seconds=HOUR)
        self._excused[agent] = (hold, until)

    # --- lifting -------------------------------------------------------------------

    def wake(self) -> None:
        """The policy may have changed (applied main moved): review the holds now."""
        self._wake.set()

    async def review(self) -> list[str]:
        """Lift every limit hold whose limit no longer holds; returns those agents."""
        lifted = []
        for agent, hold in sorted((await self.records.holds()).items()):
            if hold not in LIMIT_HOLDS:
                continue
            async with self._lock:
                if await self.records.hold(agent) != hold or await self.over(agent) is not None:
                    continue
                await self.records.set_hold(agent, None)
            log.info("%s: the %s hold is lifted (within its limits again)", agent, hold)
            self.released(agent)
            lifted.append(agent)
        return lifted

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            self._wake = anyio.Event()
            deadline = self.clock.now() + self.poll
            try:
                await self.review()
            except Exception:
                log.exception("reviewing limit holds failed")
            await wait_event(self.clock, self._wake, deadline)

    # --- rates ---------------------------------------------------------------------

    def refused(self, error: RateLimitError) -> None:
        """A call was refused by a rate: one `agent.rate_limited` event per burst."""
        key = (error.agent, error.what)
        if key in self._refused:
            return
        self._refused.add(key)
        self.bus.publish(
            EventType.AGENT_RATE_LIMITED,
            agent=error.agent,
            what=error.what,
            limit=error.limit,
            message=error.message,
        )

    def allowed(self, agent: str, what: str) -> None:
        """A call went through: the next refusal starts a new burst."""
        if self._refused:
            self._refused.discard((agent, what))

    def spend_ask(self, agent: str, limits: AgentLimits) -> None:
        try:
            self.asks.spend(agent, limits.ask_operator_per_hour)
        except RateLimitError as exc:
            self.refused(exc)
            raise
        self.allowed(agent, "question")
