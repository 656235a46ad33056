"""Issue 12's targets: the operator's surfaces at fifty agents.

1. Dashboard render with 50 agents, 1,000 questions and 1,000 approvals (20 of them
   pending, each its own pushed branch with a diff): the page `/` through the ASGI app
   in-process (guard, routing, reads, templates), and each region a live update
   refetches. Target: median <= 50 ms.
2. `/metrics` scrape with 50 agents (statuses, turns reported with cost, messages):
   target <= 20 ms (median).
3. Notification delivery: `git push` of a branch -> the webhook receiver on loopback has
   the approval's notice (a real hive served in-process, hive.toml's [[notify]] on
   applied main, an aiohttp server as the provider). Target: p50 <= 50 ms.

Run: `python bench/bench_operator.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
from _utils import (
    asgi_get,
    clone,
    commit_all,
    git,
    git_async,
    open_hive,
    quiet_logs,
    scratch_dir,
    stats,
)
from _utils import verdict as _verdict
from aiohttp import web

from controller.hive import Hive
from controller.operations import Operations
from controller.settings import Settings
from controller.store import now_iso
from reconcilers.status import AgentStatus
from tests.helpers import Clone
from ui.dashboard import create_dashboard

AGENTS = 50
QUESTIONS = 1000
APPROVALS = 1000
PENDING = 20
RUNS = 50
PUSHES = 30


async def timed(app: Any, path: str, runs: int = RUNS) -> tuple[list[float], int]:
    status, size = await asgi_get(app, path)
    assert status == 200, (path, status)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await asgi_get(app, path)
        times.append((time.perf_counter() - started) * 1000)
    return times, size


def line(label: str, times: list[float], size: int, target: float) -> bool:
    median = statistics.median(times)
    p90 = statistics.quantiles(times, n=10)[-1]
    kib = f", {size / 1024:.0f} KiB" if size else ""
    ok = median <= target
    print(
        f"  {label:<34} median {median:6.1f} ms  p90 {p90:6.1f} ms  max {max(times):6.1f} ms"
        f"{kib}  (target <= {target:.0f} ms: {_verdict(ok)})"
    )
    return ok


def populate_repo(hive: Hive, root: Path) -> tuple[Clone, str]:
    work = Clone(root / "clone", hive.git.proposed_path)
    for i in range(AGENTS - 1):
        work.add_agent(f"agent-{i:02d}", f"worker number {i}")
    return work, work.commit_push("fifty agents")


def propose(hive: Hive, work: Clone, sha: str, applied: str) -> None:
    rows = []
    for i in range(PENDING):
        work.checkout(f"change/{i}", "origin/main")
        work.write(f"agents/agent-{i:02d}/prompt.md", f"Be agent {i}.\n" * 5)
        rows.append(("pending", f"refs/heads/change/{i}", work.commit_push(f"p{i}", f"change/{i}")))
    for i in range(APPROVALS - PENDING):
        rows.append((("approved", "denied", "superseded")[i % 3], f"refs/heads/old/{i}", sha))
    step = json.dumps([{"agent": "agent-01", "action": "update"}])

    def insert(db: Any) -> None:
        db.executemany(
            "INSERT INTO approvals(kind, ref, sha, base, summary, author, status, plan, errors,"
            " created_at, decided_at, applied_sha) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                ("apply_commit", ref, s, applied, f"change {ref}", "Op <op@x>", st, step, "[]",
                 now_iso(), None if st == "pending" else now_iso(), s if st == "approved" else "")
                for st, ref, s in rows
            ],
        )  # fmt: skip

    hive.store.call_sync(insert)


async def populate(hive: Hive, root: Path) -> None:
    work, sha = await anyio.to_thread.run_sync(populate_repo, hive, root)
    await hive.open_gate()
    async with hive.gate.moving() as mover:  # recorded, as an approve is
        await mover.approve(sha, approval_id=1, approver="bench", settle=lambda db, new: None)
    applied = (await hive.load_applied()).sha
    await anyio.to_thread.run_sync(propose, hive, work, sha, applied)
    for i in range(QUESTIONS):
        await hive.questions.ask("hm1nd", f"question {i}?", ["yes", "no"])
    for i, (name, rev) in enumerate(hive.applied.revs.items()):
        await hive.records.record(
            AgentStatus(name, rev, rev, "running", True, False, False, "Running", ""), None
        )
        hive.set_turn(name, {"state": "thinking", "model": "claude-x"})
        last = {"duration_ms": 4000 + i, "cost_usd": 0.01 * i, "status": "ok",
                "input_tokens": 1000, "output_tokens": 200}  # fmt: skip
        hive.set_turn(name, {"state": "idle", "model": "claude-x", "last_turn": last})
    names = sorted(hive.applied.revs)
    for i in range(500):
        await hive.broker.send(names[i % AGENTS], names[(i * 7 + 3) % AGENTS], f"m{i}")


async def bench_render_and_scrape() -> tuple[bool, bool]:
    root = scratch_dir()
    try:
        settings = Settings.from_env({}, state_dir=root / "state", runtime_dir=root / "run")
        hive = Hive(settings)
        async with anyio.create_task_group() as tg:
            await tg.start(hive.broker.serve)
            await populate(hive, root)
            app = create_dashboard(Operations(hive))
            started = time.perf_counter()
            status, _ = await asgi_get(app, "/")
            cold = (time.perf_counter() - started) * 1000
            assert status == 200
            print(
                f"dashboard: {len(hive.applied.revs)} agents, "
                f"{await hive.questions.count('pending')} open questions, "
                f"{await hive.approvals.count()} approvals ({PENDING} pending with diffs), "
                f"500 messages; cold first render {cold:.1f} ms"
            )
            ok_page = line("page /", *(await timed(app, "/")), target=50)
            for region in ("agents", "approvals", "questions", "messages", "notify"):
                line(f"region {region}", *(await timed(app, f"/region/{region}")), target=50)
            page30 = "/region/questions?page=30"
            line("region questions, page 30", *(await timed(app, page30)), target=50)
            line("page /reconcile", *(await timed(app, "/reconcile")), target=50)
            logs = "/logs?agent=agent-07"
            line(f"page {logs}", *(await timed(app, logs)), target=50)
            print("metrics:")
            ok_metrics = line("GET /metrics", *(await timed(app, "/metrics", 200)), target=20)
            tg.cancel_scope.cancel()
        hive.store.close()
        return ok_page, ok_metrics
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def bench_notify() -> bool:
    root = scratch_dir()
    arrived: dict[str, float] = {}
    got = anyio.Event()

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        arrived[str(body.get("sha", ""))] = time.perf_counter()
        got.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["BENCH_HOOK"] = f"http://127.0.0.1:{port}/hook"
    try:
        async with open_hive(root, environ=env) as hive:
            work = clone(hive.git.proposed_path, root / "work")
            (work / "hive.toml").write_text(
                '[[notify]]\nkind = "webhook"\nurl_env = "BENCH_HOOK"\nevents = ["approval"]\n'
            )
            commit_all(work, "notify the bench")
            await git_async(work, "push", "-q", "origin", "HEAD:policy")
            with anyio.fail_after(10):
                while not await hive.approvals.count_pending():
                    await anyio.sleep(0.01)
            (first,) = await hive.approvals.query("pending")
            await hive.approvals.approve(first.id)
            with anyio.fail_after(10):
                while not hive.notifier.targets:
                    await anyio.sleep(0.01)
            git(work, "fetch", "-q", "origin")
            to_push, from_return, pushes = [], [], []
            for i in range(PUSHES):
                git(work, "checkout", "-qB", f"n/{i}", "origin/main")
                (work / "agents" / "hm1nd" / "prompt.md").write_text(f"push {i}\n")
                sha = commit_all(work, f"push {i}")
                got = anyio.Event()
                started = time.perf_counter()
                await git_async(work, "push", "-q", "origin", f"HEAD:n/{i}")
                returned = time.perf_counter()
                with anyio.fail_after(10):
                    while sha not in arrived:
                        await got.wait()
                        got = anyio.Event()
                to_push.append(arrived[sha] - started)
                pushes.append(returned - started)
                from_return.append(max(0.0, arrived[sha] - returned))
            print(f"notification: git push -> webhook received, {PUSHES} pushes")
            print("  " + stats(to_push).line("push started -> received", 34))
            print("  " + stats(pushes).line("git push alone (started -> returned)", 34))
            print("  " + stats(from_return).line("push returned -> received", 34))
            p50 = stats(to_push).p50
            print(f"  target p50 <= 50 ms: {_verdict(p50 <= 50)}")
            return p50 <= 50
    finally:
        await runner.cleanup()
        shutil.rmtree(root, ignore_errors=True)


async def main() -> None:
    quiet_logs()
    await bench_render_and_scrape()
    await bench_notify()


if __name__ == "__main__":
    anyio.run(main)
