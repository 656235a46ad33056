"""How soon an approval runs: `approve` on host.sock -> the agent running at the new rev.

A real hive in-process (process runtime, the sleeper harness of the tests), one agent.
Each round commits a new `agent.toml` for it, pushes it to `main` of the real
`proposed.git`, waits for the pending approval, then times from just before the
`approve` call to the `agent.status` event (on a `watch` stream over host.sock) that
says the agent is ready and running with `observed_rev` equal to its new subtree oid.
The update stops the old harness process and starts a new one; the bench checks the pid
changed. Target: p50 <= 500 ms.

    python bench/bench_approve_to_running.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _utils  # first: puts this worktree on sys.path
import anyio
from _utils import (
    Watch,
    agent_running,
    agent_toml,
    approval_created,
    clone,
    commit_all,
    git,
    git_async,
    open_hive,
    remove,
    scratch_dir,
    stats,
    verdict,
)

from controller.hive import Hive
from controller.protocol import Client, connect_client

P50_TARGET_MS = 500.0
AGENT = "bee"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed approvals (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--unsandboxed", action="store_true", help="agents without bubblewrap (as --unsandboxed)"
    )
    return parser.parse_args()


async def propose(work: Path, watch: Watch, description: str) -> tuple[int, str]:
    """Commit and push a new spec for the agent; its approval id and the agent's rev."""
    (work / "agents" / AGENT).mkdir(parents=True, exist_ok=True)
    (work / "agents" / AGENT / "agent.toml").write_text(agent_toml(description))
    sha = commit_all(work, description)
    rev = git(work, "rev-parse", f"{sha}:agents/{AGENT}")
    mark = watch.mark()
    await git_async(work, "push", "-q", "origin", "HEAD:main")
    _, event = await watch.wait(approval_created(sha), mark, timeout=10)
    return int(event["approval"]["id"]), rev


async def approve(
    client: Client, watch: Watch, approval_id: int, rev: str
) -> tuple[float, float, dict[str, Any]]:
    """Approve; (seconds the call took, seconds until running at `rev`, the run event)."""
    mark = watch.mark()
    started = time.perf_counter()
    await client.call("approve", id=approval_id)
    answered = time.perf_counter()
    running, _ = await watch.wait(agent_running(AGENT, rev), mark, timeout=10)
    runs = [r for r in watch.since(mark, "reconcile.run") if r["name"] == AGENT]
    return answered - started, running - started, runs[-1] if runs else {}


async def pid_of(hive: Hive) -> int | None:
    return (await hive.runtime.observe(AGENT)).pid


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    call_took: list[float] = []
    to_running: list[float] = []
    reconcile_ms: list[float] = []
    actions: set[str] = set()
    try:
        hive_cm = open_hive(root, unsandboxed=args.unsandboxed)
        async with hive_cm as hive, anyio.create_task_group() as tg:
            watch = Watch()
            await tg.start(watch.serve, hive.layout.host_socket)
            work = clone(hive.git.proposed_path, root / "clone")
            async with await connect_client(hive.layout.host_socket) as client:
                approval_id, rev = await propose(work, watch, "round 0")
                await approve(client, watch, approval_id, rev)
                for i in range(1, args.rounds + 1):
                    before = await pid_of(hive)
                    approval_id, rev = await propose(work, watch, f"round {i}")
                    await anyio.sleep(0.05)
                    took, running, run = await approve(client, watch, approval_id, rev)
                    after = await pid_of(hive)
                    if after is None or after == before:
                        raise RuntimeError(f"round {i}: the harness was not restarted")
                    call_took.append(took)
                    to_running.append(running)
                    reconcile_ms.append(float(run.get("duration_ms", 0.0)) / 1000)
                    actions.add(str(run.get("action")))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        remove(root, args.keep)

    where = "unsandboxed" if args.unsandboxed else "in a bwrap sandbox"
    print(f"approve -> running at the new rev (hive in-process, sleeper {where}, ", end="")
    print(f"{args.rounds} rounds)")
    s = stats(to_running)
    print(s.line("approve sent -> agent.status running"))
    print(stats(call_took).line("  the approve call (plan + merge)"))
    print(stats(reconcile_ms).line(f"  the reconcile ({'/'.join(sorted(actions))})"))
    print(f"target p50 <= {P50_TARGET_MS:.0f} ms: {s.p50:.2f} ms {verdict(s.p50 <= P50_TARGET_MS)}")


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
