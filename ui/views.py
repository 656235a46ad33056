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

from controller.events import EventType
from controller.operations import Operations
from controller.values import AgentRow, Approval
from ui.diff import ApprovalDiff, DiffCache
from ui.graph import talk_graph

__all__ = ["REGIONS", "Views", "event_script_data"]

PENDING_CARDS = 50
HISTORY_ROWS = 50
MESSAGE_ROWS = 150
RUNS_PER_AGENT = 12


@dataclass(frozen=True)
class AgentLine:
    """An agent's row as the agents table shows it: with its page's address (behind the
    dashboard, `ui.agent_proxy`), what its
    harness last reported and its last reconcile."""

    row: AgentRow
    url: str
    turn: dict[str, object] | None
    last_run: dict[str, Any] | None


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
        _, hive_spend = await self.ops.spend()
        last_runs = await self._last_runs()
        turns = self.ops.turns()
        lines = [
            AgentLine(
                row=row,
                url=f"/agents/{row.name}/",
                turn=turns.get(row.name),
                last_run=last_runs.get(row.name),
            )
            for row in rows
        ]
        return {"agents": lines, "hive_spend": hive_spend}

    async def _last_runs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for run in await self.ops.runs(None, limit=500):
            out.setdefault(str(run["name"]), run)
        return out

    async def approvals(self) -> dict[str, Any]:
        pending = await self.ops.approvals("pending", limit=PENDING_CARDS)
        total_pending = await self.ops.pending_approvals()
        recent = await self.ops.approvals(None, limit=HISTORY_ROWS + total_pending)
        decided = [a for a in recent if a.status != "pending"][:HISTORY_ROWS]

        cards = [
            Card(approval, diff)
            for approval, diff in zip(
                pending, await self.diffs.get_many([(a.base, a.sha) for a in pending]), strict=True
            )
        ]
        return {"pending": cards, "total_pending": total_pending, "decided": decided}

    async def questions(self) -> dict[str, Any]:
        pending = await self.ops.questions("pending")
        resolved = [q for q in await self.ops.questions(None, limit=20) if q.status != "pending"]
        return {"questions": pending, "resolved": resolved[:10]}

    async def messages(self) -> dict[str, Any]:
        rows = await self.ops.messages(None, MESSAGE_ROWS)
        names = self.ops.desired_revs()
        return {
            "messages": rows,
            "graph": talk_graph(names, await self.ops.traffic()),
            "agent_names": sorted(names),
        }

    async def notify(self) -> dict[str, Any]:
        statuses = await self.ops.conditions()
        turns = self.ops.turns()
        return {
            "pending_approvals": await self.ops.pending_approvals(),
            "pending_questions": len(await self.ops.questions("pending")),
            "not_ready": sorted(n for n, s in statuses.items() if not s.ready),
            "thinking": sorted(n for n, t in turns.items() if t.get("state") == "thinking"),
            "applied_sha": self.ops.applied_sha(),
            # The gate's alarm (applied main moved outside hive-c0re) and proposed main.
            "alarm": self.ops.alarm(),
            "proposed_main": self.ops.proposed_main(),
            # "none" under --unsandboxed: every page says so (templates/_notify.html).
            "sandbox": self.ops.sandbox(),
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

    async def region(self, name: str) -> dict[str, Any]:
        if name == "agents":
            return await self.agents()
        if name == "approvals":
            return await self.approvals()
        if name == "questions":
            return await self.questions()
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
}


def event_script_data() -> dict[str, dict[str, Any]]:
    """What the dashboard's script knows of events, rendered into the page: the types by
    name (as `EventType` spells them) and the regions each type touches."""
    return {
        "types": {t.name: t.value for t in EventType},
        "touches": {t.value: list(_TOUCHES.get(t.family, ())) for t in EventType},
    }
