"""Resident memory of the real daemon at rest with 50 agents running.

Starts `hive-c0re serve` (with its dashboard unless `--no-dashboard`) as a subprocess
(HIVE_STATE_DIR and HIVE_RUNTIME_DIR in a temp dir; this worktree's code first on
PYTHONPATH), pushes one commit declaring N agents (default 50) to the real
`proposed.git`, approves it over the real host.sock and waits until every agent is ready
and running. Then it lets the daemon idle and samples its VmRSS from /proc/<pid>/status.
Target: <= 80 MB.

The daemon's harness cannot be chosen by flag or environment (`Settings.harness_command`
is not read from either), so agents run the real default harness, `hive-ag3nt serve` /
`hive-m1nd serve`. Agents outlive the daemon (own session): after SIGTERM to the daemon
they are stopped by the pids in `<state>/agents/<name>/proc.json`.

    python bench/bench_idle_rss.py [--agents 50] [--idle 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import _utils  # first: puts this worktree on sys.path
import anyio
from _utils import (
    Watch,
    agent_names,
    agent_pids,
    agent_toml,
    approval_created,
    clone,
    commit_all,
    git_async,
    open_daemon,
    remove,
    rss_kib,
    scratch_dir,
    verdict,
)

from controller.protocol import Client, connect_client

RSS_TARGET_MB = 80.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50, help="agents to run (default 50)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds at rest (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="run the daemon without its dashboard (default: with it)",
    )
    return parser.parse_args()


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


async def all_running(client: Client, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
    with anyio.fail_after(timeout):
        while True:
            rows: list[dict[str, Any]] = await client.call("agents")
            if len(rows) == count and all(r["ready"] and r["state"] == "running" for r in rows):
                return rows
            await anyio.sleep(0.2)


async def sample(pid: int, seconds: float) -> list[dict[str, int]]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_kib(pid))
        await anyio.sleep(0.25)
    samples.append(rss_kib(pid))
    return samples


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    try:
        async with (
            open_daemon(root, dashboard=not args.no_dashboard) as daemon,
            anyio.create_task_group() as tg,
        ):
            watch = Watch()
            await tg.start(watch.serve, daemon.host_socket)
            async with await connect_client(daemon.host_socket) as client:
                await all_running(client, 1)
                at_start = (await sample(daemon.pid, args.idle))[-1]

                repos = await client.call("repos")
                work = clone(Path(repos["proposed"]), root / "clone")
                for name in agent_names(args.agents, prefix="m"):
                    (work / "agents" / name).mkdir(parents=True)
                    (work / "agents" / name / "agent.toml").write_text(agent_toml(name))
                sha = commit_all(work, f"{args.agents} agents")
                mark = watch.mark()
                await git_async(work, "push", "-q", "origin", "HEAD:refs/heads/bench/fleet")
                _, event = await watch.wait(approval_created(sha), mark, timeout=60)
                started = time.perf_counter()
                await client.call("approve", id=event["approval"]["id"])
                await all_running(client, args.agents + 1)
                apply_s = time.perf_counter() - started

                idle = await sample(daemon.pid, args.idle)
            pids = agent_pids(daemon.state_dir)
            harness = set()
            for name in pids:
                proc = json.loads((daemon.state_dir / "agents" / name / "proc.json").read_text())
                harness.add(" ".join([Path(proc["argv"][0]).name, *proc["argv"][1:]]))
            agents_pss = sum(pss_kib(pid) for pid in pids.values())
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        remove(root, args.keep)

    rss = idle[-1]["VmRSS"]
    print(f"hive-c0re serve idle memory ({' '.join(daemon.argv[1:])}, {args.agents} agents)")
    print(f"harness (the default; not settable for the daemon): {', '.join(sorted(harness))}")
    print(f"{'daemon VmRSS, manager only, at rest':<44} {mb(at_start['VmRSS'])}")
    print(f"{f'apply {args.agents} agents: approve -> all running':<44} {apply_s:.2f} s")
    print(
        f"{f'daemon VmRSS after {args.idle:.0f} s idle':<44} {mb(rss)}"
        f"  (min {mb(min(s['VmRSS'] for s in idle))}, max {mb(max(s['VmRSS'] for s in idle))}"
        f" over {len(idle)} samples; peak VmHWM {mb(idle[-1]['VmHWM'])};"
        f" threads {idle[-1]['Threads']})"
    )
    print(
        f"{'growth from manager-only to N agents':<44} {mb(rss - at_start['VmRSS'])}"
        f" ({(rss - at_start['VmRSS']) / args.agents:.0f} KiB per agent)"
    )
    print(f"{'the agents themselves (sum of PSS)':<44} {mb(agents_pss)} in {len(pids)} processes")
    print(
        f"target VmRSS <= {RSS_TARGET_MB:.0f} MB: {mb(rss)} {verdict(rss / 1024 <= RSS_TARGET_MB)}"
    )


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
