"""The periodic resync at 500 agents, and how much one changed agent costs among them.

A real hive in-process (process runtime, the sleeper harness of the tests). One commit
declaring N agents (default 500) is pushed to the real `proposed.git` and approved over
host.sock; the bench waits until every agent is ready. Then it times `await
hive.resync()` no-op passes (the drift check run every `resync_interval`; target
<= 50 ms median) and records how many agents each pass queued (must be 0). Last, it
pushes a commit changing one agent of the N, approves it, waits until the work queue is
idle, and counts the reconciles that ran (`hive.agent_queue.runs` delta and
`reconcile.run` events on a `watch` stream; must be exactly 1).

Two fleets, each in a hive of its own: `disabled` (every agent has `enabled = false`:
built, no process) and `running` (N sleeper processes, ~7 MB PSS each). The periodic
resync is set to an hour so only the timed passes run.

    python bench/bench_resync.py [--agents 500] [--passes 20] [--mode both|disabled|running]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import _utils  # first: puts this worktree on sys.path
import anyio
from _utils import (
    Stats,
    Watch,
    agent_names,
    agent_toml,
    approval_created,
    clone,
    commit_all,
    git_async,
    open_hive,
    remove,
    scratch_dir,
    stats,
    verdict,
)

from controller.hive import Hive
from controller.protocol import Client, connect_client

RESYNC_TARGET_MS = 50.0


@dataclass(frozen=True)
class Figures:
    mode: str
    agents: int
    apply_s: float
    resync: Stats
    max_queued: int
    one_change_s: float
    runs: int
    run_events: list[str]
    resync_after: Stats


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500, help="fleet size (default 500)")
    parser.add_argument("--passes", type=int, default=20, help="timed resyncs (default 20)")
    parser.add_argument(
        "--mode", choices=("both", "disabled", "running"), default="both", help="default both"
    )
    parser.add_argument(
        "--settle", type=float, default=0.5, help="seconds to wait for stray reconciles (0.5)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    return parser.parse_args()


async def propose(
    work: Path, watch: Watch, message: str, branch: str, expect: dict[str, int]
) -> int:
    """Commit the clone's changes, push them to `branch`, check the plan; the approval id."""
    sha = commit_all(work, message)
    mark = watch.mark()
    await git_async(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    _, event = await watch.wait(approval_created(sha), mark, timeout=60)
    approval = event["approval"]
    actions: dict[str, int] = {}
    for step in approval["plan"]:
        actions[step["action"]] = actions.get(step["action"], 0) + 1
    if approval["errors"] or any(actions.get(k) != v for k, v in expect.items()):
        raise RuntimeError(f"unexpected plan {actions} / errors {approval['errors']}")
    return int(approval["id"])


async def approve_until_idle(hive: Hive, client: Client, approval_id: int) -> float:
    """Seconds from the `approve` call to an idle agents work queue."""
    started = time.perf_counter()
    await client.call("approve", id=approval_id)
    await hive.agent_queue.wait_idle()
    return time.perf_counter() - started


async def all_ready(hive: Hive, count: int, running: bool) -> None:
    """Every agent (and the manager) ready; when running, every sleeper past its start-up."""
    statuses = await hive.records.statuses()
    late = sorted(n for n, s in statuses.items() if not s.ready)
    if len(statuses) != count + 1 or late:
        raise RuntimeError(f"{len(statuses)} statuses, not ready: {late[:10]}")
    if running:
        with anyio.fail_after(60):
            for name in statuses:
                while not (hive.layout.notes_dir(name) / "started").exists():
                    await anyio.sleep(0.05)


async def time_resyncs(hive: Hive, passes: int) -> tuple[Stats, int]:
    for _ in range(2):  # warm-up
        await hive.resync()
        await hive.agent_queue.wait_idle()
    took: list[float] = []
    queued = 0
    for _ in range(passes):
        started = time.perf_counter()
        drifted = await hive.resync()
        took.append(time.perf_counter() - started)
        queued = max(queued, len(drifted))
        if drifted:
            await hive.agent_queue.wait_idle()
    return stats(took), queued


async def fleet(args: argparse.Namespace, mode: str) -> Figures:
    running = mode == "running"
    root = scratch_dir()
    try:
        async with (
            open_hive(root, resync_interval=3600.0) as hive,
            anyio.create_task_group() as tg,
        ):
            watch = Watch()
            await tg.start(watch.serve, hive.layout.host_socket)
            work = clone(hive.git.proposed_path, root / "clone")
            names = agent_names(args.agents, prefix="r")
            for name in names:
                (work / "agents" / name).mkdir(parents=True)
                (work / "agents" / name / "agent.toml").write_text(
                    agent_toml(f"agent {name}", enabled=running)
                )
            async with await connect_client(hive.layout.host_socket) as client:
                approval_id = await propose(
                    work,
                    watch,
                    f"{args.agents} agents",
                    "bench/fleet",
                    {"create": args.agents},
                )
                apply_s = await approve_until_idle(hive, client, approval_id)
                await all_ready(hive, args.agents, running)

                resync, max_queued = await time_resyncs(hive, args.passes)

                changed = names[len(names) // 2]
                (work / "agents" / changed / "agent.toml").write_text(
                    agent_toml(f"agent {changed}, changed", enabled=running)
                )
                runs_before = hive.agent_queue.runs
                mark = watch.mark()
                approval_id = await propose(
                    work,
                    watch,
                    f"change {changed}",
                    "bench/one",
                    {"update": 1, "none": args.agents},
                )
                one_change_s = await approve_until_idle(hive, client, approval_id)
                await anyio.sleep(args.settle)
                await hive.agent_queue.wait_idle()
                runs = hive.agent_queue.runs - runs_before
                run_events = [e["name"] for e in watch.since(mark, "reconcile.run")]
                resync_after, _ = await time_resyncs(hive, args.passes)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        remove(root, args.keep)
    return Figures(
        mode,
        args.agents,
        apply_s,
        resync,
        max_queued,
        one_change_s,
        runs,
        run_events,
        resync_after,
    )


def show(f: Figures) -> None:
    print(f"-- {f.agents} agents, {f.mode} (hive in-process, sleeper harness)")
    print(f"{'apply: approve -> work queue idle':<40} {f.apply_s:.2f} s")
    print(f.resync.line("resync no-op pass"))
    print(f.resync_after.line("resync no-op pass, after the change"))
    print(
        f"target resync p50 <= {RESYNC_TARGET_MS:.0f} ms: {f.resync.p50:.2f} ms"
        f" {verdict(f.resync.p50 <= RESYNC_TARGET_MS)}"
    )
    print(
        f"agents queued by a no-op resync (max over passes): {f.max_queued}"
        f" {verdict(f.max_queued == 0)}"
    )
    print(f"{'1 changed agent: approve -> queue idle':<40} {f.one_change_s * 1000:.1f} ms")
    print(
        f"reconciles run for a 1-agent change: {f.runs} (queue runs),"
        f" {len(f.run_events)} reconcile.run events {f.run_events}"
        f" {verdict(f.runs == 1 and len(f.run_events) == 1)}"
    )


async def main(args: argparse.Namespace) -> None:
    modes = ("disabled", "running") if args.mode == "both" else (args.mode,)
    for mode in modes:
        show(await fleet(args, mode))


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
