"""The agents reconciler against a `FakeRuntime`, driven by the work queue on a `FakeClock`.

Real git repos (pushed with the git CLI, applied with approve's merge and ref move), a real sqlite
file for the records; only the containers are in memory. The same behaviour with real
processes is in `test_agents_lifecycle.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from controller.bus import Bus
from controller.records import StoreRecords
from controller.store import Store
from gitstore.store import GitStore
from reconcilers.agents import AgentsReconciler, CrashPolicy
from reconcilers.backoff import Backoff
from reconcilers.queue import WorkQueue
from reconcilers.runtime import ContainerState, Runtime
from reconcilers.status import AgentStatus
from tests.fakes.clock import FakeClock
from tests.fakes.runtime import FakeRuntime
from tests.helpers import Clone, land, wait_for

pytestmark = pytest.mark.anyio

CRASH = CrashPolicy(limit=5, window=60.0, backoff=Backoff(base=1.0, cap=30.0))


@dataclass
class Rig:
    git: GitStore
    clone: Clone
    clock: FakeClock
    runtime: FakeRuntime
    records: StoreRecords
    reconciler: AgentsReconciler
    queue: WorkQueue
    _ids: itertools.count[int]

    async def apply(self, message: str) -> None:
        """Commit the clone's changes, push them to proposed and approve them."""
        sha = self.clone.commit_push(message)
        await land(self.git, sha, next(self._ids), "test")

    async def rev(self, name: str) -> str:
        agent = await self.git.applied_agent(name)
        assert agent is not None
        return agent.rev

    async def settle(self, *names: str) -> None:
        """Queue `names`, then wait until the queue is idle and every exit was seen."""
        for name in names:
            self.queue.add(name)
        with anyio.fail_after(10):
            while True:
                await self.queue.wait_idle()
                await anyio.wait_all_tasks_blocked()
                if self.queue.idle:
                    return

    async def status(self, name: str) -> AgentStatus:
        status = await self.records.status(name)
        assert status is not None
        return status


@asynccontextmanager
async def open_rig(root: Path, crash: CrashPolicy = CRASH) -> AsyncIterator[Rig]:
    clock = FakeClock()
    git = GitStore(root / "state")
    store = Store(root / "hive.sqlite")
    records = StoreRecords(store, Bus())
    runtime = FakeRuntime(clock)
    seam: Runtime = runtime  # the fake honours the protocol (mypy checks this line)
    reconciler = AgentsReconciler(git, seam, records, harness_version="1", crash=crash, clock=clock)
    queue = WorkQueue(reconciler.reconcile, workers=4, backoff=crash.backoff, clock=clock)
    rig = Rig(
        git,
        Clone(root / "clone", git.proposed_path),
        clock,
        runtime,
        records,
        reconciler,
        queue,
        itertools.count(1),
    )

    async def forward_exits() -> None:
        async for name in runtime.exits():
            queue.add(name)

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(queue.serve)
            tg.start_soon(forward_exits)
            yield rig
            tg.cancel_scope.cancel()
    finally:
        store.close()


async def with_alice(rig: Rig, **extra: str) -> None:
    rig.clone.add_agent("alice", **extra)
    await rig.apply("alice")
    await rig.settle("alice")


async def test_a_new_agent_is_created_and_started(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig)
        assert rig.runtime.verbs("alice") == ["create", "start"]
        status = await rig.status("alice")
        assert (status.ready, status.reason, status.state) == (True, "Running", "running")
        assert status.observed_rev == status.desired_rev == await rig.rev("alice")
        (run,) = await rig.records.runs("alice")
        assert (run["action"], run["outcome"]) == ("create", "ok")
        await rig.settle("alice")
        assert rig.runtime.verbs("alice") == ["create", "start"]  # idempotent


async def test_a_changed_spec_updates_the_agent_and_leaves_the_others_alone(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path) as rig:
        rig.clone.add_agent("alice")
        rig.clone.add_agent("bob")
        await rig.apply("alice and bob")
        await rig.settle("alice", "bob")
        rig.clone.add_agent("alice", "v2")
        await rig.apply("alice v2")
        await rig.settle("alice", "bob")
        assert rig.runtime.verbs("alice") == ["create", "start", "update"]
        assert rig.runtime.verbs("bob") == ["create", "start"]
        assert rig.runtime.containers["alice"].build.spec.description == "v2"
        assert (await rig.status("alice")).observed_rev == await rig.rev("alice")
        assert rig.runtime.containers["alice"].state is ContainerState.RUNNING


async def test_a_removed_agent_is_destroyed_and_its_status_forgotten(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig)
        rig.clone.remove("agents/alice")
        await rig.apply("no more alice")
        await rig.settle("alice")
        assert rig.runtime.verbs("alice")[-1] == "destroy"
        assert "alice" not in rig.runtime.containers
        assert await rig.records.status("alice") is None


async def test_a_held_agent_is_stopped_until_the_hold_is_lifted(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig)
        await rig.records.set_hold("alice", "killed")
        await rig.settle("alice")
        assert rig.runtime.verbs("alice")[-1] == "stop"
        status = await rig.status("alice")
        assert (status.ready, status.reason, status.message) == (True, "Held", "held: killed")
        await rig.settle("alice")
        assert rig.runtime.verbs("alice").count("start") == 1
        await rig.records.set_hold("alice", None)
        await rig.settle("alice")
        assert rig.runtime.verbs("alice")[-1] == "start"
        assert (await rig.status("alice")).reason == "Running"


async def test_a_disabled_agent_is_built_but_not_started(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig, enabled="false")
        assert rig.runtime.verbs("alice") == ["create"]
        status = await rig.status("alice")
        assert (status.ready, status.reason, status.state) == (True, "Disabled", "stopped")


async def test_an_invalid_spec_is_stalled_and_not_retried(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        rig.clone.write("agents/alice/agent.toml", 'description = "x"\nenabled = "yes"\n')
        await rig.apply("a bad alice")  # past the plan's validation, as a forced apply would be
        await rig.settle("alice")
        await rig.queue.wait_settled()
        assert rig.runtime.verbs("alice") == []
        status = await rig.status("alice")
        assert (status.stalled, status.reason) == (True, "Invalid")
        assert "enabled" in status.message


async def test_a_crashed_agent_is_restarted_at_once(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig)
        rig.runtime.crash("alice")
        await rig.settle()
        assert rig.runtime.verbs("alice") == ["create", "start", "start"]
        assert (await rig.records.runs("alice"))[0]["action"] == "restart"
        assert (await rig.status("alice")).ready


async def test_a_crash_loop_backs_off_on_the_clock_then_stalls(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        rig.runtime.crash_on_start("alice", times=5)
        await with_alice(rig)
        # Crash 1 restarts at once (no wait before the first restart); then 1 s, 2 s, 4 s.
        assert rig.runtime.verbs("alice").count("start") == 2
        for waited, starts in ((1.0, 3), (2.0, 4), (4.0, 5)):
            status = await rig.status("alice")
            assert (status.reason, status.stalled) == ("CrashBackoff", False)
            assert status.message == f"crashed; restarting in {waited:.1f}s"
            assert rig.queue.delayed == 1
            rig.clock.advance(waited - 0.25)
            await rig.settle()
            assert rig.runtime.verbs("alice").count("start") == starts - 1  # not yet
            rig.clock.advance(0.25)
            await rig.settle()
            assert rig.runtime.verbs("alice").count("start") == starts
        await rig.queue.wait_settled()  # stalled: nothing more is scheduled
        status = await rig.status("alice")
        assert (status.stalled, status.reason, status.state) == (True, "CrashLoop", "crashed")
        assert status.message.startswith("crashed 5 times in 60s; not restarting.")
        # The operator fixed it and asks again (`hive start` / `hive reconcile`).
        rig.reconciler.forgive("alice")
        await rig.settle("alice")
        status = await rig.status("alice")
        assert (status.ready, status.stalled, status.reason) == (True, False, "Running")


async def test_crashes_older_than_the_window_are_forgotten(tmp_path: Path) -> None:
    policy = CrashPolicy(limit=3, window=10.0, backoff=Backoff(base=1.0, cap=30.0))
    async with open_rig(tmp_path, policy) as rig:
        await with_alice(rig)
        for _ in range(4):
            rig.clock.advance(11)  # each crash alone in its window
            rig.runtime.crash("alice")
            await rig.settle()
            assert (await rig.status("alice")).ready
        assert rig.runtime.verbs("alice").count("start") == 5


async def test_runtime_errors_back_off_and_stall_after_the_limit(tmp_path: Path) -> None:
    policy = CrashPolicy(limit=3, window=60.0, backoff=Backoff(base=1.0, cap=30.0))
    async with open_rig(tmp_path, policy) as rig:
        rig.runtime.fail("create", "alice", "nixos-container create: no space", times=None)
        await with_alice(rig)
        status = await rig.status("alice")
        assert (status.reason, status.failures, status.stalled) == ("RuntimeError", 1, False)
        assert status.message == "nixos-container create: no space"
        for waited, failures in ((1.0, 2), (2.0, 3)):
            rig.clock.advance(waited - 0.25)
            await rig.settle()
            assert (await rig.status("alice")).failures == failures - 1
            rig.clock.advance(0.25)
            await rig.settle()
            assert (await rig.status("alice")).failures == failures
        await rig.queue.wait_settled()
        assert (await rig.status("alice")).stalled
        assert rig.runtime.verbs("alice") == ["create"] * 3
        rig.runtime.heal("create", "alice")
        await rig.settle("alice")
        status = await rig.status("alice")
        assert (status.ready, status.failures) == (True, 0)


async def test_a_stale_harness_version_rebuilds_the_agent(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await with_alice(rig)
        upgraded = AgentsReconciler(
            rig.git, rig.runtime, rig.records, harness_version="2", clock=rig.clock
        )
        await upgraded.reconcile("alice")
        assert rig.runtime.verbs("alice") == ["create", "start", "update"]
        container = rig.runtime.containers["alice"]
        assert (container.build.harness_version, container.state) == (
            "2",
            ContainerState.RUNNING,
        )
        assert (await rig.status("alice")).ready
        await upgraded.reconcile("alice")
        assert rig.runtime.verbs("alice") == ["create", "start", "update"]


async def test_a_slow_update_of_one_agent_does_not_block_another(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        rig.clone.add_agent("alice")
        rig.clone.add_agent("bob")
        await rig.apply("alice and bob")
        await rig.settle("alice", "bob")
        slow = rig.runtime.gate("update", "alice")  # a `nixos-container update` of minutes
        rig.clone.add_agent("alice", "v2")
        await rig.apply("alice v2")
        rig.queue.add("alice")
        with anyio.fail_after(5):
            await slow.entered.wait()
        # Only now bob changes: his update must run while alice's is still held.
        rig.clone.add_agent("bob", "v2")
        await rig.apply("bob v2")
        rig.queue.add("bob")

        async def bob_is_current() -> bool:
            status = await rig.records.status("bob")
            return (
                status is not None and status.ready and status.observed_rev == await rig.rev("bob")
            )

        await wait_for(bob_is_current, timeout=5)
        # Bob's status is written inside his reconcile, so his run may still be returning:
        # wait for it to end rather than assume it already has.
        await wait_for(lambda: rig.queue.active == 1, timeout=5)  # alice, still updating
        assert rig.runtime.in_flight == 1
        slow.release()
        await rig.settle()
        status = await rig.status("alice")
        assert status.ready and status.observed_rev == await rig.rev("alice")
        assert rig.runtime.peak_in_flight == 2
