"""The `Runtime` contract, run against the process runtime and against `FakeRuntime`: the
fake the reconciler unit tests use behaves as a real runtime does."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from gitstore.spec import AgentSpec
from reconcilers.layout import Layout
from reconcilers.process import ProcessRuntime
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Runtime
from tests.fakes.runtime import FakeRuntime
from tests.helpers import FAKE_HARNESS, wait_for

pytestmark = pytest.mark.anyio


@dataclass
class Subject:
    runtime: Runtime
    crash: Callable[[str], Awaitable[None]]  # the agent dies without being asked


def build(rev: str) -> AgentBuild:
    return AgentBuild(
        name="alice",
        role="agent",
        rev=rev,
        spec=AgentSpec(description="contract"),
        harness_version="1",
    )


@pytest.fixture(params=["process", "fake"])
async def subject(request: pytest.FixtureRequest, short_dir: Path) -> AsyncIterator[Subject]:
    if request.param == "fake":
        fake = FakeRuntime()

        async def crash(name: str) -> None:
            fake.crash(name)

        yield Subject(fake, crash)
        return
    runtime = ProcessRuntime(
        Layout(short_dir / "state", short_dir / "run"),
        proposed_repo=short_dir / "none.git",
        harness_command=lambda role: [sys.executable, str(FAKE_HARNESS)],
        environ={k: v for k, v in os.environ.items() if not k.startswith("HIVE_")},
        stop_grace=2.0,
    )

    async def kill(name: str) -> None:
        pid = (await runtime.observe(name)).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.serve)
            yield Subject(runtime, kill)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.stop("alice")


async def test_a_missing_agent_can_be_stopped_and_destroyed_but_not_started(
    subject: Subject,
) -> None:
    runtime = subject.runtime
    assert (await runtime.observe("alice")).state is ContainerState.MISSING
    assert await runtime.names() == []
    await runtime.stop("alice")
    await runtime.destroy("alice")
    with pytest.raises(ContainerError, match="not created"):
        await runtime.start("alice")


async def test_an_agent_is_created_started_updated_stopped_and_destroyed(
    subject: Subject,
) -> None:
    runtime = subject.runtime
    await runtime.create(build("rev1"))
    observed = await runtime.observe("alice")
    assert (observed.state, observed.rev, observed.harness_version) == (
        ContainerState.STOPPED,
        "rev1",
        "1",
    )
    assert await runtime.names() == ["alice"]
    await runtime.start("alice")
    first = await runtime.observe("alice")
    assert first.state is ContainerState.RUNNING and first.pid is not None
    await runtime.start("alice")  # idempotent
    assert (await runtime.observe("alice")).pid == first.pid
    await runtime.update(build("rev2"))  # a running agent is restarted at the new rev
    updated = await runtime.observe("alice")
    assert (updated.state, updated.rev) == (ContainerState.RUNNING, "rev2")
    assert updated.pid != first.pid
    await runtime.stop("alice")
    await runtime.stop("alice")
    assert (await runtime.observe("alice")).state is ContainerState.STOPPED
    await runtime.update(build("rev3"))  # a stopped one stays stopped
    assert (await runtime.observe("alice")).state is ContainerState.STOPPED
    await runtime.destroy("alice")
    assert (await runtime.observe("alice")).state is ContainerState.MISSING
    assert await runtime.names() == []


async def test_an_unasked_exit_is_yielded_and_leaves_the_agent_crashed(
    subject: Subject,
) -> None:
    runtime = subject.runtime
    await runtime.create(build("rev1"))
    await runtime.start("alice")
    exits = runtime.exits()
    await subject.crash("alice")
    with anyio.fail_after(10):
        assert await exits.__anext__() == "alice"

    async def crashed() -> bool:
        return (await runtime.observe("alice")).state is ContainerState.CRASHED

    await wait_for(crashed)
    await runtime.start("alice")  # a crashed agent starts again
    assert (await runtime.observe("alice")).state is ContainerState.RUNNING


async def test_starts_asked_at_once_run_one_agent(subject: Subject) -> None:
    # The reconciler and an operator's `hive start` may ask in the same moment.
    runtime = subject.runtime
    await runtime.create(build("rev1"))
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(runtime.start, "alice")
    observed = await runtime.observe("alice")
    assert observed.state is ContainerState.RUNNING
    if isinstance(runtime, ProcessRuntime):
        state = f"HIVE_STATE={runtime.layout.notes_dir('alice')}".encode()

        def harnesses() -> list[int]:
            return [int(p) for p in os.listdir("/proc") if p.isdigit() and _harness(int(p), state)]

        # Until the sandbox has exec'd it, the harness is still a bwrap process.
        await wait_for(lambda: observed.pid in harnesses())
        found = harnesses()
        try:
            assert found == [observed.pid], found
        finally:  # a second one would be no child of the runtime's: end it here
            for pid in set(found) - {observed.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        key = runtime.layout.harness_key("alice")
        assert key.read_text() and not list(key.parent.glob(".key-*"))


def _harness(pid: int, state: bytes) -> bool:
    """Whether `pid` is a harness (not the bwrap process of its sandbox) of `state`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return not cmdline[0].endswith(b"bwrap") and state in environ
