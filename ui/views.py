"""What the dashboard shows, gathered from the hive: one function per page region.

Each region is rendered on its own (`/region/<name>`) so a live update refetches only
the regions an event touches. Reads go through the hive's own readers (`agent_rows`,
`approvals.query`, `broker.messages`, ...); applied `main` comes from the hive's cache,
anything else of git from `GitStore` calls (a worker-thread hop each, off the loop).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from controller.admin import agent_rows
from controller.hive import Hive
from ui.diff import DiffCache
from ui.graph import talk_graph

__all__ = ["REGIONS", "Views"]

PENDING_CARDS = 50
HISTORY_ROWS = 50
MESSAGE_ROWS = 150
RUNS_PER_AGENT = 12


class Views:
    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self.diffs = DiffCache(hive.git)

    async def agents(self, host: str) -> dict[str, Any]:
        rows = await agent_rows(self.hive)
        last_runs = await self._last_runs()
        for row in rows:
            row["turn"] = self.hive.turns.get(row["name"])
            row["url"] = f"http://{host}:{row['port']}/"
            row["last_run"] = last_runs.get(row["name"])
        return {"agents": rows}

    async def _last_runs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for run in await self.hive.records.runs(None, limit=500):
            out.setdefault(run["name"], run)
        return out

    async def approvals(self) -> dict[str, Any]:
        pending = await self.hive.approvals.query("pending", limit=PENDING_CARDS)
        total_pending = await self.hive.approvals.count_pending()
        recent = await self.hive.approvals.query(None, limit=HISTORY_ROWS + total_pending)
        decided = [a for a in recent if a["status"] != "pending"][:HISTORY_ROWS]

        diffs = await self.diffs.get_many([(a["base"], a["sha"]) for a in pending])
        for approval, diff in zip(pending, diffs, strict=True):
            approval["diff"] = diff
        return {"pending": pending, "total_pending": total_pending, "decided": decided}

    async def questions(self) -> dict[str, Any]:
        pending = await self.hive.questions.query("pending")
        resolved = [
            q for q in await self.hive.questions.query(None, limit=20) if q["status"] != "pending"
        ]
        return {"questions": pending, "resolved": resolved[:10]}

    async def messages(self) -> dict[str, Any]:
        rows = await self.hive.broker.messages(None, MESSAGE_ROWS)
        counts = await self.hive.broker.counts()
        names = self.hive.applied.names
        return {"messages": rows, "graph": talk_graph(names, counts), "agent_names": sorted(names)}

    async def notify(self) -> dict[str, Any]:
        statuses = await self.hive.records.statuses()
        return {
            "pending_approvals": await self.hive.approvals.count_pending(),
            "pending_questions": len(await self.hive.questions.query("pending")),
            "not_ready": sorted(n for n, s in statuses.items() if not s.ready),
            "thinking": sorted(
                n for n, t in self.hive.turns.items() if t.get("state") == "thinking"
            ),
            "applied_sha": self.hive.applied.sha,
            # "none" under --unsandboxed: every page says so (templates/_notify.html).
            "sandbox": self.hive.runtime.sandbox,
        }

    async def reconcile(self) -> dict[str, Any]:
        statuses = await self.hive.records.statuses()
        holds = await self.hive.records.holds()
        runs = await self.hive.records.runs(None, limit=1000)
        by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            if len(by_agent[run["name"]]) < RUNS_PER_AGENT:
                by_agent[run["name"]].append(run)
        applied = self.hive.applied
        desired = applied.revs
        names = sorted(set(desired) | set(statuses))
        longest = max((r["duration_ms"] for r in runs), default=1.0) or 1.0
        rows = []
        for name in names:
            status = statuses.get(name)
            rows.append(
                {
                    "name": name,
                    "status": status,
                    "desired_rev": desired.get(name, ""),
                    "hold": holds.get(name),
                    "runs": by_agent.get(name, []),
                }
            )
        heads = await self.hive.git.proposed_heads()
        return {
            "rows": rows,
            "longest": longest,
            "applied_head": applied.sha,
            "proposed_heads": sorted(heads.items()),
        }

    async def region(self, name: str, host: str) -> dict[str, Any]:
        if name == "agents":
            return await self.agents(host)
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

    async def page(self, host: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("notify", "agents", "approvals", "questions", "messages"):
            out[name] = await self.region(name, host)
        return out


REGIONS = ("notify", "agents", "approvals", "questions", "messages", "reconcile")
