"""One approval changing 20 agents: how long until all 20 run at the new rev, and how many
builds ran at once.

A real hive in-process (`build_hive`, host.sock, the work queue with the default
`workers`), on the process runtime with the sleeper harness of the tests, where every
`create` and `update` first takes a fixed build time (default 200 ms: a
`nixos-container update` builds for seconds to minutes; 200 ms keeps the run short and
makes parallelism show). The bench declares 20 agents in one commit and approves it
(timed too), then, per round, commits a change to all 20 `agent.toml`s in one commit,
pushes it to the real `proposed.git`, waits for the pending approval, and times from
just before `approve` on host.sock to the last of the 20 `agent.status` events (on a
`watch` stream) saying the agent is ready and running at its new subtree oid. The
runtime counts the builds in flight; their peak is the concurrency the queue achieved.
With `workers` builds at a time the wall time is about ceil(20 / workers) builds; one at
a time it is 20 builds.

    python bench/bench_apply_concurrency.py [--agents 20] [--rounds 3] [--build-ms 200]
        [--workers N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import _utils  # first: puts this worktree on sys.path
import anyio
from _utils import (
    Watch,
    agent_names,
    agent_running,
    agent_toml,
    approval_created,
    clone,
    commit_all,
    git,
    git_async,
    kill_leftovers,
    remove,
    scratch_dir,
    verdict,
)
from anyio.abc import TaskStatus

from controller.hive import Hive
from controller.protocol import Client, connect_client
from controller.settings import Settings
from hyperhive.daemon import build_hive
from reconcilers.layout import Layout
from reconcilers.process import ProcessRuntime
from reconcilers.runtime import AgentBuild, Observed
from tests.helpers import hive_settings, running_hive


class SlowBuilds:
    """The process runtime, with a fixed build time before every create and update."""

    def __init__(self, inner: ProcessRuntime, build_s: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.sandbox = inner.sandbox
        self.build_s = build_s
        self.in_flight = 0
        self.peak = 0

    @contextmanager
    def _building(self) -> Iterator[None]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.inner.serve(task_status=task_status)

    def name_problem(self, name: str) -> str | None:
        return self.inner.name_problem(name)

    async def observe(self, name: str) -> Observed:
        return await self.inner.observe(name)

    async def names(self) -> list[str]:
        return await self.inner.names()

    async def create(self, build: AgentBuild) -> None:
        with self._building():
            await anyio.sleep(self.build_s)
            await self.inner.create(build)

    async def update(self, build: AgentBuild) -> None:
        with self._building():
            await anyio.sleep(self.build_s)
            await self.inner.update(build)

    async def start(self, name: str) -> None:
        await self.inner.start(name)

    async def stop(self, name: str) -> None:
        await self.inner.stop(name)

    async def destroy(self, name: str) -> None:
        await self.inner.destroy(name)

    def exits(self) -> AsyncIterator[str]:
        return self.inner.exits()

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        return await self.inner.logs(name, lines)


def slow_runtime(settings: Settings, build_s: float) -> SlowBuilds:
    command = list(settings.harness_command)
    return SlowBuilds(
        ProcessRuntime(
            Layout(settings.state_dir, settings.runtime_dir),
            proposed_repo=settings.state_dir / "proposed.git",
            harness_command=lambda role: command,
            environ=settings.environ,
            stop_grace=settings.stop_grace,
        ),
        build_s,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20, help="agents changed (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="timed applies (default 3)")
    parser.add_argument("--build-ms", type=float, default=200.0, help="per build (200)")
    parser.add_argument("--workers", type=int, help="agent work queue workers (the default)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    return parser.parse_args()


async def apply(
    client: Client, watch: Watch, work: Path, names: list[str], message: str
) -> tuple[float, float]:
    """Commit a new spec for every agent, push, approve; (approve -> all running, the
    approve call), in seconds."""
    for name in names:
        (work / "agents" / name).mkdir(parents=True, exist_ok=True)
        (work / "agents" / name / "agent.toml").write_text(agent_toml(f"{name}: {message}"))
    sha = commit_all(work, message)
    revs = {name: git(work, "rev-parse", f"{sha}:agents/{name}") for name in names}
    mark = watch.mark()
    await git_async(work, "push", "-q", "origin", "HEAD:main")
    _, event = await watch.wait(approval_created(sha), mark, timeout=30)
    mark = watch.mark()
    started = time.perf_counter()
    await client.call("approve", id=int(event["approval"]["id"]))
    answered = time.perf_counter()
    last = started
    for name in names:
        at, _ = await watch.wait(agent_running(name, revs[name]), mark, timeout=120)
        last = max(last, at)
    return last - started, answered - started


async def main(args: argparse.Namespace) -> None:
    root = scratch_dir()
    overrides = {} if args.workers is None else {"workers": args.workers}
    settings = hive_settings(root, resync_interval=3600.0, **overrides)
    runtime = slow_runtime(settings, args.build_ms / 1000)
    names = agent_names(args.agents, prefix="c")
    walls: list[float] = []
    peaks: list[int] = []
    queue_peak: int | None = None

    def build(s: Settings) -> Hive:
        return build_hive(s, runtime)

    try:
        async with running_hive(settings, build) as hive, anyio.create_task_group() as tg:
            watch = Watch()
            await tg.start(watch.serve, hive.layout.host_socket)
            work = clone(hive.git.proposed_path, root / "clone")
            async with await connect_client(hive.layout.host_socket) as client:
                runtime.peak = 0
                create_s, _ = await apply(client, watch, work, names, "created")
                create_peak = runtime.peak
                for i in range(1, args.rounds + 1):
                    runtime.peak = 0
                    wall, _ = await apply(client, watch, work, names, f"round {i}")
                    walls.append(wall)
                    peaks.append(runtime.peak)
            queue_peak = getattr(hive.agent_queue, "peak_active", None)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        kill_leftovers(settings.state_dir)
        remove(root, args.keep)

    workers = settings.workers
    build_ms = args.build_ms
    ideal = math.ceil(args.agents / workers) * build_ms
    serial = args.agents * build_ms
    print(
        f"one approval changing {args.agents} agents -> all running at the new rev"
        f" (hive in-process, process runtime + sleeper, {build_ms:.0f} ms per build,"
        f" workers={workers}, python {sys.version.split()[0]})"
    )
    rows = [(f"create {args.agents}", create_s, create_peak)]
    for i, (wall, peak) in enumerate(zip(walls, peaks, strict=True), start=1):
        rows.append((f"update round {i}", wall, peak))
    for label, wall, peak in rows:
        print(f"{label + ': approve -> all running':<44} {wall * 1000:8.0f} ms   peak {peak}")
    median = statistics.median(walls) * 1000
    print(f"{'median update':<44} {median:8.0f} ms")
    print(f"{'one build at a time would take':<44} {serial:8.0f} ms")
    print(f"{f'{workers} at a time would take':<44} {ideal:8.0f} ms")
    if queue_peak is not None:
        print(f"{'work queue peak_active':<44} {queue_peak:8d}")
    ok = max(peaks) == min(workers, args.agents) and median < serial / 2
    print(f"target: {workers} builds at once, wall < half the serial time: {verdict(ok)}")


if __name__ == "__main__":
    _utils.quiet_logs()
    anyio.run(main, parse_args())
