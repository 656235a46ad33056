"""How soon a `git push` becomes a pending approval on `hive watch`.

A real hive (in-process by default, `--daemon` for the `hive-c0re serve` subprocess), a
real clone of `proposed.git`, N real `git push`es of prepared commits to distinct
branches (each adds one agent), and a `watch` stream over the real host.sock. For each
push: the latency from just before `git push` starts to the `approval.created` event,
how long `git push` itself takes, and the time from push *return* to the event (zero or
negative when the event beat the push's own exit). Targets: p50 <= 20 ms, p99 <= 100 ms.
A breakdown splits each latency at the moment the ref file was written (its mtime: the
kernel's coarse clock, so that moment reads up to one tick, ~4 ms, early): git's share
(push start -> ref written) and the hive's (ref written -> event: inotify, the proposals
reconcile with its plan, the sqlite insert, the event over host.sock). For reference,
the same commits are then pushed to a plain bare repo nobody watches.

    python bench/bench_push_to_approval.py [--pushes 50] [--gap 0.1] [--daemon]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import _utils  # first: puts this worktree on sys.path
import anyio
from _utils import (
    Watch,
    agent_names,
    agent_toml,
    approval_created,
    clone,
    commit_all,
    git,
    git_async,
    open_host_socket,
    remove,
    scratch_dir,
    stats,
    verdict,
)

from controller.protocol import connect_client

P50_TARGET_MS = 20.0
P99_TARGET_MS = 100.0
# Default polling intervals of pull-based GitOps controllers, for comparison.
POLLERS = (("Flux", 60.0), ("Argo CD", 180.0), ("comin", 60.0))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=50, help="timed pushes (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed pushes first (default 3)")
    parser.add_argument(
        "--gap", type=float, default=0.1, help="seconds between pushes (default 0.1)"
    )
    parser.add_argument(
        "--daemon", action="store_true", help="run `hive-c0re serve` as a subprocess"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    total = args.warmup + args.pushes
    to_event: list[float] = []
    push_took: list[float] = []
    return_to_event: list[float] = []
    to_ref: list[float] = []
    plain_push: list[float] = []
    ref_to_event: list[float] = []
    try:
        async with (
            open_host_socket(root, daemon=args.daemon) as socket,
            anyio.create_task_group() as tg,
        ):
            watch = Watch()
            await tg.start(watch.serve, socket)
            async with await connect_client(socket) as client:
                repos = await client.call("repos")
            proposed = Path(repos["proposed"])
            work = clone(proposed, root / "clone")
            commits = []
            for i, name in enumerate(agent_names(total, prefix="p")):
                git(work, "checkout", "-qB", f"p{i}", "origin/main")
                (work / "agents" / name).mkdir(parents=True)
                (work / "agents" / name / "agent.toml").write_text(agent_toml(f"push {i}"))
                commits.append(commit_all(work, f"add {name}"))
            for i, sha in enumerate(commits):
                await anyio.sleep(args.gap)
                mark = watch.mark()
                wall = time.time()
                started = time.perf_counter()
                await git_async(work, "push", "-q", "origin", f"{sha}:refs/heads/bench/push-{i}")
                returned = time.perf_counter()
                arrived, _ = await watch.wait(approval_created(sha), mark, timeout=10)
                ref_at = (proposed / "refs/heads/bench" / f"push-{i}").stat().st_mtime - wall
                if i >= args.warmup:
                    to_event.append(arrived - started)
                    push_took.append(returned - started)
                    return_to_event.append(arrived - returned)
                    to_ref.append(ref_at)
                    ref_to_event.append(arrived - started - ref_at)
            plain = root / "plain.git"
            git(root, "init", "-q", "--bare", str(plain))
            for i, sha in enumerate(commits[args.warmup :]):
                await anyio.sleep(args.gap)
                started = time.perf_counter()
                await git_async(work, "push", "-q", str(plain), f"{sha}:refs/heads/bench/push-{i}")
                plain_push.append(time.perf_counter() - started)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        remove(root, args.keep)

    where = "hive-c0re serve subprocess" if args.daemon else "hive in-process"
    print(f"push -> approval.created on watch ({where}, {args.pushes} pushes, gap {args.gap}s)")
    s = stats(to_event)
    print(s.line("push start -> approval.created"))
    print(stats(push_took).line("git push (its own duration)"))
    print(stats(plain_push).line("  git push to a bare repo nobody watches"))
    signed = sorted(x * 1000 for x in return_to_event)
    early = sum(1 for x in signed if x <= 0)
    print(
        f"{'push return -> approval.created':<40} p50={statistics.median(signed):+8.2f} ms"
        f"  min={signed[0]:+8.2f} ms  max={signed[-1]:+8.2f} ms"
        f"  (event before push returned: {early}/{len(signed)})"
    )
    print(stats(to_ref).line("  git: push start -> ref written (mtime)"))
    print(stats(ref_to_event).line("  hive: ref written -> approval.created"))
    tenth = max(1, len(to_event) // 5)
    print(
        f"{'trend: p50 first / last ' + str(tenth) + ' pushes':<40}"
        f" {stats(to_event[:tenth]).p50:.2f} ms / {stats(to_event[-tenth:]).p50:.2f} ms"
        f"  (pending approvals grow from {args.warmup} to {total})"
    )
    for label, value, target in (("p50", s.p50, P50_TARGET_MS), ("p99", s.p99, P99_TARGET_MS)):
        print(f"target {label} <= {target:.0f} ms: {value:.2f} ms {verdict(value <= target)}")
    polls = ", ".join(f"{n} every {int(i)} s" for n, i in POLLERS)
    print(
        f"compare: pull-based controllers poll ({polls}); a push waits half an interval on"
        f" average: Flux/comin 30 s ({30_000 / s.p50:,.0f}x hive's p50),"
        f" Argo CD 90 s ({90_000 / s.p50:,.0f}x)"
    )


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
