"""Server-side render time of the dashboard page with 100 agents and 1,000 approvals.

The store holds 100 agents (applied tree, status rows, turn states) and 1,000 approvals
(20 pending, each its own branch with a diff; 980 decided). The page is rendered by
calling the dashboard's ASGI app in-process (guard, routing, reads, templates: all of
the server's side, none of the network), 50 times; the first, cold render (diffs not yet
cached) is reported on its own. Run: `python bench/bench_dashboard.py`.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _utils import asgi_get  # also puts this worktree first on sys.path

from controller.hive import Hive
from controller.operations import Operations
from controller.settings import Settings
from controller.store import now_iso
from reconcilers.status import AgentStatus
from tests.helpers import Clone
from ui.dashboard import create_dashboard

AGENTS = 100
APPROVALS = 1000
PENDING = 20
RUNS = 50


async def render(app: Any) -> tuple[int, int]:
    return await asgi_get(app, "/")


def push_agents(hive: Hive, root: Path) -> tuple[Clone, str]:
    clone = Clone(root / "clone", hive.git.proposed_path)
    for i in range(AGENTS - 1):
        clone.add_agent(f"agent-{i:03d}", f"worker number {i}")
    return clone, clone.commit_push("a hundred agents")


async def populate(hive: Hive, root: Path) -> None:
    clone, sha = await anyio.to_thread.run_sync(push_agents, hive, root)
    await hive.open_gate()
    async with hive.gate.moving() as mover:  # recorded, as an approve is
        await mover.approve(sha, approval_id=1, approver="bench", settle=lambda db, new: None)
    applied = (await hive.load_applied()).sha  # what each later proposal was cut from
    await anyio.to_thread.run_sync(propose, hive, clone, sha, applied)


def propose(hive: Hive, clone: Clone, sha: str, applied: str) -> None:
    rows = []
    for i in range(PENDING):
        clone.checkout(f"change/{i}", "origin/main")
        clone.write(f"agents/agent-{i:03d}/prompt.md", f"Be agent {i}.\n" * 5)
        branch_sha = clone.commit_push(f"prompt for agent {i}", f"change/{i}")
        rows.append(("apply_commit", f"refs/heads/change/{i}", branch_sha, applied, "pending"))
    for i in range(APPROVALS - PENDING):
        status = ("approved", "denied", "superseded")[i % 3]
        rows.append(("apply_commit", f"refs/heads/old/{i}", sha, applied, status))
    step = json.dumps([{"agent": "agent-001", "action": "update"}])

    def insert(db: Any) -> None:
        db.executemany(
            "INSERT INTO approvals(kind, ref, sha, base, summary, author, status, plan, errors,"
            " created_at, decided_at, applied_sha) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    k,
                    ref,
                    s,
                    b,
                    f"change {ref}",
                    "Op <op@x>",
                    st,
                    step,
                    "[]",
                    now_iso(),
                    None if st == "pending" else now_iso(),
                    s if st == "approved" else "",
                )
                for k, ref, s, b, st in rows
            ],
        )

    hive.store.call_sync(insert)


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))
    try:
        settings = Settings.from_env({}, state_dir=root / "state", runtime_dir=root / "run")
        hive = Hive(settings)
        await populate(hive, root)
        revs = hive.applied.revs
        for name, rev in revs.items():
            await hive.records.record(
                AgentStatus(name, rev, rev, "running", True, False, False, "Running", ""), None
            )
            hive.turns[name] = {"state": "idle", "since": now_iso(), "model": "claude-x"}
        app = create_dashboard(Operations(hive))
        started = time.perf_counter()
        status, size = await render(app)
        cold = (time.perf_counter() - started) * 1000
        assert status == 200, status
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            await render(app)
            times.append((time.perf_counter() - started) * 1000)
        pending = await hive.approvals.count_pending()
        total = len(await hive.approvals.query(None, limit=10_000))
        print(
            f"dashboard render: {len(revs)} agents, {total} approvals "
            f"({pending} pending cards with diffs)"
        )
        print(f"  page size {size / 1024:.0f} KiB; cold first render {cold:.1f} ms")
        print(
            f"  median {statistics.median(times):.1f} ms, p90 "
            f"{statistics.quantiles(times, n=10)[-1]:.1f} ms, "
            f"max {max(times):.1f} ms over {RUNS} renders"
        )
        hive.store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
