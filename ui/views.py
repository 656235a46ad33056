"""What the dashboard shows, gathered by the hive's operations: one function per region.

Each region is rendered on its own (`/region/<name>`) so a live update refetches only
the regions an event touches. Every read is a call on `controller.operations`, whose
typed values the templates show (with a little page-only context around them: an agent
page's address, an approval's diff).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from controller.activity import run_verdict
from controller.events import EventType
from controller.operations import Operations
from controller.values import AgentRow, Approval
from ui.diff import ApprovalDiff, DiffCache
from ui.graph import talk_graph, talk_matrix

__all__ = ["REGIONS", "Screen", "Views", "event_script_data"]

# A card's diff is open up to this many changed lines in this many files, else collapsed
# to its size (twenty new agents made a card ~2,500 px tall).
DIFF_OPEN_LINES = 40
DIFF_OPEN_FILES = 5
CARDS_PER_PAGE = 10  # pending approval cards on one screen (each holds a diff)
HISTORY_ROWS = 25
QUESTIONS_PER_PAGE = 20
MESSAGE_ROWS = 150
RUNS_PER_AGENT = 12
MATRIX_FROM = 13  # from this many nodes on, who-talks-to-whom is a matrix, not a circle


@dataclass(frozen=True)
class Screen:
    """Which rows of a long list one screen shows: page `page` (from 1) of `total`."""

    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return min(self.total, (self.page - 1) * self.size + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.page * self.size)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @classmethod
    def of(cls, page: int, size: int, total: int) -> Screen:
        pages = max(1, -(-total // size))
        return cls(min(max(1, page), pages), size, total)


@dataclass(frozen=True)
class AgentLine:
    """An agent's row as the agents table shows it: with its page's address (behind the
    dashboard, `ui.agent_proxy`), what its
    harness last reported and its last reconcile."""

    row: AgentRow
    url: str
    turn: dict[str, object] | None
    last_run: dict[str, Any] | None
    spend: float  # US dollars of the turns seen since hive-c0re started
    activity: str  # when it last did something (a turn state or a reconcile), ISO time

    @property
    def chip(self) -> tuple[str, str]:
        """(class, text) of its state chip: held, crashed, stalled are never ready."""
        a = self.row
        if a.hold:
            return "warn", f"‖ held: {a.hold}"
        if a.state == "crashed":
            return "bad", "✗ crashed"
        if a.stalled:
            return "bad", "✗ stalled"
        if a.ready and a.state == "running":
            return "ok", "✓ ready"
        if a.ready and not a.enabled:
            return "dim", "○ disabled"
        if a.ready:
            return "warn", f"○ {a.state}"
        return "warn", f"… {a.reason}"

    @property
    def verdict(self) -> str:
        return run_verdict(self.last_run) if self.last_run else ""


@dataclass(frozen=True)
class Card:
    """A pending approval as its card shows it: the approval and its diff."""

    approval: Approval
    diff: ApprovalDiff


class Views:
    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.diffs = DiffCache(ops)

    async def agents(self) -> dict[str, Any]:
        rows = await self.ops.agents()
        _, hive_spend = await self.ops.spend_summary()
        last_runs = await self._last_runs()
        turns = self.ops.turns()
        lines = []
        for row in rows:
            turn, run = turns.get(row.name), last_runs.get(row.name)
            times = [str(turn.get("since", ""))] if turn else []
            times += [str(run["started_at"])] if run else []
            lines.append(
                AgentLine(
                    row=row,
                    url=f"/agents/{row.name}/",
                    turn=turn,
                    last_run=run,
                    # Accounting's today (UTC), durable; sorts the table by spend.
                    spend=row.spend_today_usd,
                    activity=max(times, default=""),
                )
            )
        return {"agents": lines, "hive_spend": hive_spend}

    async def _last_runs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for run in await self.ops.runs(None, limit=500):
            out.setdefault(str(run["name"]), run)
        return out

    async def approvals(self, page: int = 1, history: int = 1) -> dict[str, Any]:
        """Pending cards and decided rows, each newest first, a screen at a time."""
        total = await self.ops.pending_approvals()
        cards_screen = Screen.of(page, CARDS_PER_PAGE, total)
        pending, total = await self.ops.approvals_screen(
            CARDS_PER_PAGE, cards_screen.offset, pending=True
        )
        cards_screen = Screen.of(cards_screen.page, CARDS_PER_PAGE, total)
        decided, decided_total = await self.ops.approvals_screen(
            HISTORY_ROWS, (max(1, history) - 1) * HISTORY_ROWS, pending=False
        )
        cards = [
            Card(approval, diff)
            for approval, diff in zip(
                pending, await self.diffs.get_many([(a.base, a.sha) for a in pending]), strict=True
            )
        ]
        return {
            "pending": cards,
            "total_pending": total,
            "screen": cards_screen,
            "decided": decided,
            "history": Screen.of(history, HISTORY_ROWS, decided_total),
            "diff_open_lines": DIFF_OPEN_LINES,
            "diff_open_files": DIFF_OPEN_FILES,
        }

    async def questions(self, page: int = 1) -> dict[str, Any]:
        """Pending questions newest first, a screen at a time, with the true count."""
        total = await self.ops.pending_questions()
        screen = Screen.of(page, QUESTIONS_PER_PAGE, total)
        pending, total = await self.ops.questions_screen(
            "pending", QUESTIONS_PER_PAGE, screen.offset
        )
        resolved = [q for q in await self.ops.questions(None, limit=20) if q.status != "pending"]
        return {
            "questions": pending,
            "screen": Screen.of(screen.page, QUESTIONS_PER_PAGE, total),
            "resolved": resolved[:10],
        }

    async def messages(self) -> dict[str, Any]:
        rows = await self.ops.messages(None, MESSAGE_ROWS)
        names = self.ops.desired_revs()
        traffic = await self.ops.traffic()
        graph = talk_graph(names, traffic)
        return {
            "messages": rows,
            "graph": graph,
            "matrix": talk_matrix(names, traffic) if len(graph.nodes) >= MATRIX_FROM else None,
            "agent_names": sorted(names),
        }

    async def notify(self) -> dict[str, Any]:
        statuses = await self.ops.conditions()
        turns = self.ops.turns()
        return {
            "pending_approvals": await self.ops.pending_approvals(),
            "pending_questions": await self.ops.pending_questions(),
            "not_ready": sorted(n for n, s in statuses.items() if not s.ready),
            "thinking": sorted(n for n, t in turns.items() if t.get("state") == "thinking"),
            "applied_sha": self.ops.applied_sha(),
            # The gate's alarm (applied main moved outside hive-c0re) and proposed main.
            "alarm": self.ops.alarm(),
            "proposed_main": self.ops.proposed_main(),
            # "none" under --unsandboxed: every page says so (templates/_notify.html).
            "sandbox": self.ops.sandbox(),
            # hive.toml's [[notify]] tables cannot be read: nobody is being told.
            "notify_problem": self.ops.notify_problem(),
        }

    async def reconcile(self) -> dict[str, Any]:
        statuses = await self.ops.conditions()
        holds = await self.ops.holds()
        runs = await self.ops.runs(None, limit=1000)
        by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            if len(by_agent[str(run["name"])]) < RUNS_PER_AGENT:
                by_agent[str(run["name"])].append(run)
        desired = self.ops.desired_revs()
        names = sorted(set(desired) | set(statuses))
        for run in runs:
            run["verdict"] = run_verdict(run)
        longest = max((float(str(r["duration_ms"])) for r in runs), default=1.0) or 1.0
        rows = [
            {
                "name": name,
                "status": statuses.get(name),
                "desired_rev": desired.get(name, ""),
                "hold": holds.get(name),
                "runs": by_agent.get(name, []),
            }
            for name in names
        ]
        return {
            "rows": rows,
            "longest": longest,
            "applied_head": self.ops.applied_sha(),
            "proposed_heads": sorted((await self.ops.proposed_heads()).items()),
        }

    async def region(self, name: str, page: int = 1, history: int = 1) -> dict[str, Any]:
        if name == "agents":
            return await self.agents()
        if name == "approvals":
            return await self.approvals(page, history)
        if name == "questions":
            return await self.questions(page)
        if name == "messages":
            return await self.messages()
        if name == "notify":
            return await self.notify()
        if name == "reconcile":
            return await self.reconcile()
        raise KeyError(name)

    async def page(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("notify", "agents", "approvals", "questions", "messages"):
            out[name] = await self.region(name)
        return out


REGIONS = ("notify", "agents", "approvals", "questions", "messages", "reconcile")

# The regions an event of each family makes stale; `hello` (a new stream) all of them.
_TOUCHES: dict[str, tuple[str, ...]] = {
    "hello": REGIONS,
    "approval": ("approvals", "notify"),
    "question": ("questions", "notify"),
    "message": ("messages",),
    "agent": ("agents", "notify", "reconcile"),
    "applied": ("agents", "notify", "reconcile"),
    "proposed": ("notify", "reconcile"),
    "reconcile": ("agents", "reconcile"),
    "notify": ("notify",),
}


# Agents coming and going change who-talks-to-whom's nodes (the messages region).
_ALSO: dict[EventType, tuple[str, ...]] = {
    EventType.APPLIED_MOVED: ("messages",),
    EventType.AGENT_REMOVED: ("messages",),
}


def event_script_data() -> dict[str, dict[str, Any]]:
    """What the dashboard's script knows of events, rendered into the page: the types by
    name (as `EventType` spells them) and the regions each type touches."""
    return {
        "types": {t.name: t.value for t in EventType},
        "touches": {t.value: [*_TOUCHES.get(t.family, ()), *_ALSO.get(t, ())] for t in EventType},
    }
