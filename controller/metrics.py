"""The hive's Prometheus metrics (`/metrics` on the dashboard server), every family
prefixed `hyperhive_`.

Two kinds, so nothing costs anything on a hot path when nobody scrapes:
- counters and histograms of things that happen (reconciles, turns, applied moves,
  notifications, push -> pending latency) live in `Metrics.registry` and are incremented
  in place by whoever sees them happen: the agents' work queue calls `reconciled`, the
  hive calls `turn_reported`, the notifier `notified`;
- what is true now (approvals by status, agents by state, queue depth, inboxes, open
  questions, broker totals) is read at scrape time: `scrape(hive)` takes one store hop
  for every count and hands the figures to a collector built for that scrape, so two
  scrapes at once never share state.

The text is `prometheus_client`'s own exposition (`generate_latest`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.version import VERSION

if TYPE_CHECKING:
    from controller.hive import Hive

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
APPROVAL_STATUSES = ("pending", "approved", "denied", "superseded", "failed")
AGENT_STATES = ("running", "stopped", "missing", "crashed", "creating", "updating")
# A reconcile of one agent takes milliseconds (no-op) to minutes (a nixos build).
RECONCILE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900)
TURN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30)


class Metrics:
    """The in-place counters; `scrape` adds what is read at scrape time."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.spend: dict[str, float] = {}  # agent -> dollars, for the agents table
        self.reconcile_total = Counter(
            "hyperhive_reconcile",
            "Agent reconciles by agent and result (ok, error: it raised and backs off).",
            ["agent", "result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "hyperhive_reconcile_duration_seconds",
            "How long one agent's reconcile took.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconcile_actions = Counter(
            "hyperhive_reconcile_actions",
            "Reconciles that did something or failed, by agent, action and outcome.",
            ["agent", "action", "outcome"],
            registry=r,
        )
        self.push_to_pending = Histogram(
            "hyperhive_push_to_pending_seconds",
            "From the proposed repo's ref moving to its pending approval being recorded.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.applied_moves = Counter(
            "hyperhive_applied_moves",
            "Moves of applied main made by hive-c0re (approvals, resets, recoveries).",
            registry=r,
        )
        self.turns_total = Counter(
            "hyperhive_turns",
            "Claude turns ended, by agent and status (ok, error, timeout, cancelled).",
            ["agent", "status"],
            registry=r,
        )
        self.turn_duration = Histogram(
            "hyperhive_turn_duration_seconds",
            "How long one claude turn took.",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "hyperhive_agent_tokens",
            "Tokens used by an agent's turns, by direction (input, output).",
            ["agent", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "hyperhive_agent_cost_usd",
            "What an agent's turns cost, in US dollars, as claude reports it.",
            ["agent"],
            registry=r,
        )
        self.notifications = Counter(
            "hyperhive_notifications",
            "Notification deliveries by provider kind, event and result (sent, failed).",
            ["kind", "event", "result"],
            registry=r,
        )

    # --- in place --------------------------------------------------------------------

    def reconciled(self, agent: str, result: str, seconds: float) -> None:
        self.reconcile_total.labels(agent, result).inc()
        self.reconcile_duration.observe(max(0.0, seconds))

    def run_recorded(self, agent: str, action: str, outcome: str) -> None:
        self.reconcile_actions.labels(agent, action, outcome).inc()

    def turn_ended(self, agent: str, turn: dict[str, object]) -> None:
        """A turn of `agent` ended: `turn` is the harness's `last_turn` report."""
        status = str(turn.get("status") or "unknown")[:16]
        self.turns_total.labels(agent, status).inc()
        duration = turn.get("duration_ms")
        if isinstance(duration, int | float) and duration >= 0:
            self.turn_duration.observe(duration / 1000)
        for direction in ("input", "output"):
            count = turn.get(f"{direction}_tokens")
            if isinstance(count, int) and count > 0:
                self.tokens.labels(agent, direction).inc(count)
        cost = turn.get("cost_usd")
        if isinstance(cost, int | float) and 0 < cost < 1e6:
            self.cost.labels(agent).inc(cost)
            self.spend[agent] = self.spend.get(agent, 0.0) + cost

    def notified(self, kind: str, event: str, result: str) -> None:
        self.notifications.labels(kind, event, result).inc()

    # --- at scrape time --------------------------------------------------------------

    async def scrape(self, hive: Hive) -> bytes:
        """The exposition text: the counters plus what is true now."""
        counts = await hive.store.call(_counts)
        now = _Now(hive, counts)
        return generate_latest(_Both(self.registry, now))


@dataclass(frozen=True)
class _Counts:
    approvals: dict[str, int]
    questions_open: int
    inboxes: dict[str, int]
    states: dict[str, tuple[str, bool, bool]]  # name -> (state, ready, stalled)
    holds: dict[str, str]


def _counts(db: sqlite3.Connection) -> _Counts:
    approvals = dict.fromkeys(APPROVAL_STATUSES, 0)
    for status, n in db.execute("SELECT status, count(*) FROM approvals GROUP BY status"):
        approvals[str(status)] = int(n)
    (questions,) = db.execute("SELECT count(*) FROM questions WHERE status='pending'").fetchone()
    inboxes = {
        str(r): int(n)
        for r, n in db.execute(
            "SELECT recipient, count(*) FROM messages WHERE acked_at IS NULL GROUP BY recipient"
        )
    }
    states = {
        str(n): (str(s), bool(ready), bool(stalled))
        for n, s, ready, stalled in db.execute(
            "SELECT name, state, ready, stalled FROM agent_status"
        )
    }
    holds = {str(n): str(r) for n, r in db.execute("SELECT name, reason FROM holds")}
    return _Counts(approvals, int(questions), inboxes, states, holds)


class _Both:
    """What `generate_latest` reads: the registry's families, then this scrape's."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class _Now(Collector):
    """The gauges of one scrape, from figures read once."""

    def __init__(self, hive: Hive, counts: _Counts) -> None:
        self.hive = hive
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        hive, c = self.hive, self.counts
        info = GaugeMetricFamily(
            "hyperhive_build_info",
            "Always 1: the daemon's version, its agents' harness version and its runtime.",
            labels=["version", "harness_version", "runtime"],
        )
        info.add_metric([VERSION, hive.settings.harness_version, hive.runtime.name], 1)
        yield info

        approvals = GaugeMetricFamily(
            "hyperhive_approvals", "Approvals by status.", labels=["status"]
        )
        for status, n in sorted(c.approvals.items()):
            approvals.add_metric([status], n)
        yield approvals

        names = set(hive.applied.names) | set(c.states)
        by_state = dict.fromkeys(AGENT_STATES, 0)
        for name in names:
            state = c.states.get(name, ("missing", False, False))[0]
            by_state[state] = by_state.get(state, 0) + 1
        agents = GaugeMetricFamily(
            "hyperhive_agents",
            "Agents by the state their last reconcile observed (applied agents not yet "
            "reconciled count as missing).",
            labels=["state"],
        )
        for state, n in sorted(by_state.items()):
            agents.add_metric([state], n)
        yield agents
        ready = sum(1 for n in names if c.states.get(n, ("", False, False))[1])
        yield GaugeMetricFamily("hyperhive_agents_ready", "Agents that are Ready.", value=ready)
        stalled = sum(1 for n in names if c.states.get(n, ("", False, False))[2])
        yield GaugeMetricFamily(
            "hyperhive_agents_stalled", "Agents that are Stalled.", value=stalled
        )
        held = GaugeMetricFamily(
            "hyperhive_agent_held",
            "1 for each agent held stopped, by the hold.",
            labels=["agent", "hold"],
        )
        for name, reason in sorted(c.holds.items()):
            held.add_metric([name, reason[:64]], 1)
        yield held
        yield GaugeMetricFamily(
            "hyperhive_agents_held", "Agents held stopped (kill, stop, limits).", value=len(c.holds)
        )

        depth = GaugeMetricFamily(
            "hyperhive_workqueue_depth",
            "Keys ready to run, waiting for a worker.",
            labels=["queue"],
        )
        active = GaugeMetricFamily(
            "hyperhive_workqueue_active", "Workers reconciling now.", labels=["queue"]
        )
        delayed = GaugeMetricFamily(
            "hyperhive_workqueue_delayed", "Keys due later (backoff, requeue).", labels=["queue"]
        )
        for name, queue in (
            ("agents", hive.agent_queue),
            ("proposals", hive.proposal_queue),
            ("gate", hive.gate_queue),
        ):
            depth.add_metric([name], queue.depth)
            active.add_metric([name], queue.active)
            delayed.add_metric([name], queue.delayed)
        yield depth
        yield active
        yield delayed

        tally = hive.broker.tally
        messages = CounterMetricFamily(
            "hyperhive_messages",
            "Broker messages: sent, delivered (handed to a recipient), redelivered (given "
            "back unacknowledged, to be delivered again).",
            labels=["event"],
        )
        messages.add_metric(["sent"], tally.sent)
        messages.add_metric(["delivered"], tally.delivered)
        messages.add_metric(["redelivered"], tally.redelivered)
        yield messages
        inbox = GaugeMetricFamily(
            "hyperhive_inbox_depth", "Unacknowledged messages per recipient.", labels=["agent"]
        )
        for name in sorted(set(hive.applied.names) | set(c.inboxes)):
            inbox.add_metric([name], c.inboxes.get(name, 0))
        yield inbox
        yield GaugeMetricFamily(
            "hyperhive_questions_open",
            "Operator questions waiting for an answer.",
            value=c.questions_open,
        )
        yield GaugeMetricFamily(
            "hyperhive_alarm",
            "1 while applied main moved outside hive-c0re (the gate's alarm).",
            value=1 if hive.gate.alarm is not None else 0,
        )
