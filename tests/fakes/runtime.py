"""A container runtime in memory for reconciler unit tests (as httpx ships `MockTransport`).

It honours `reconcilers.runtime.Runtime` the way the process runtime does (the contract
test runs both): `start` of a missing agent is a `ContainerError`; `stop` and `destroy`
of a stopped or missing one are fine; `create` of an existing one rewrites its build;
`update` stops a running agent, rebuilds and starts it again; an exit nobody asked for
leaves the agent `crashed` and is yielded by `exits()`.

Beyond the contract it lets a test steer it: every call is recorded (`calls`); a verb
can be told to fail (`fail`), to block until the test lets it go (`gate`: a slow
`nixos-container update`), or to crash the agent right after it starts
(`crash_on_start`); `crash(name)` is a running agent dying. `in_flight` and
`peak_in_flight` count verbs running at once.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from gitstore.names import check_name
from reconcilers.clock import Clock, SystemClock
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed

__all__ = ["FakeRuntime", "Gate"]


@dataclass
class _Container:
    build: AgentBuild
    state: ContainerState = ContainerState.STOPPED
    pid: int | None = None
    started_at: float | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)


@dataclass
class Gate:
    """Holds one verb for one agent until `release()`; `entered` is set once it waits."""

    entered: anyio.Event = field(default_factory=anyio.Event)
    released: anyio.Event = field(default_factory=anyio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class _Failure:
    message: str
    times: int | None  # None: until `heal`


class FakeRuntime:
    name = "fake"
    sandbox = "none"

    def __init__(self, clock: Clock | None = None, *, refused_names: frozenset[str] = frozenset()):
        self.clock: Clock = clock or SystemClock()
        self.refused_names = refused_names
        self.containers: dict[str, _Container] = {}
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._gates: dict[tuple[str, str], Gate] = {}
        self._crash_on_start: dict[str, int | None] = {}
        self._pids = itertools.count(4000)
        self._exited: deque[str] = deque()
        self._exit_ready = anyio.Event()

    # --- steering (tests only) -------------------------------------------------------

    def fail(self, verb: str, name: str, message: str = "", times: int | None = 1) -> None:
        """Make the next `times` calls of `verb` on `name` raise (None: until `heal`)."""
        self._failures[(verb, name)] = _Failure(message or f"{verb} {name}: it broke", times)

    def heal(self, verb: str, name: str) -> None:
        self._failures.pop((verb, name), None)

    def gate(self, verb: str, name: str) -> Gate:
        """Make `verb` on `name` wait until the returned gate is released."""
        gate = self._gates[(verb, name)] = Gate()
        return gate

    def crash_on_start(self, name: str, times: int | None = None) -> None:
        """Every start of `name` (the next `times`) dies at once, as a broken harness does."""
        self._crash_on_start[name] = times

    def crash(self, name: str, message: str = "exited with status 3") -> None:
        """A running agent exits without being asked."""
        container = self.containers[name]
        if container.state is not ContainerState.RUNNING:
            raise AssertionError(f"{name} is {container.state}, not running")
        container.state = ContainerState.CRASHED
        container.pid = None
        container.message = message
        container.log.append(message)
        self._exited.append(name)
        self._exit_ready.set()

    def verbs(self, name: str | None = None) -> list[str]:
        """The verbs called so far (on `name`), `observe` and `logs` left out."""
        return [v for v, n in self.calls if name in (None, n)]

    # --- the Runtime protocol --------------------------------------------------------

    def name_problem(self, name: str) -> str | None:
        return f"{name} is refused by this runtime" if name in self.refused_names else None

    async def observe(self, name: str) -> Observed:
        container = self.containers.get(check_name(name))
        await anyio.lowlevel.checkpoint()
        if container is None:
            return Observed(name, ContainerState.MISSING)
        return Observed(
            name,
            container.state,
            container.build.rev,
            container.build.harness_version,
            container.pid,
            container.started_at,
            container.message,
        )

    async def names(self) -> list[str]:
        await anyio.lowlevel.checkpoint()
        return sorted(self.containers)

    async def create(self, build: AgentBuild) -> None:
        async with self._verb("create", build.name):
            existing = self.containers.get(build.name)
            if existing is None:
                self.containers[build.name] = _Container(build)
            else:
                existing.build = build

    async def update(self, build: AgentBuild) -> None:
        async with self._verb("update", build.name):
            existing = self.containers.get(build.name)
            was_running = existing is not None and existing.state is ContainerState.RUNNING
            if existing is None:
                self.containers[build.name] = _Container(build)
            else:
                self._stop(existing)
                existing.build = build
            if was_running:
                self._start(build.name)

    async def start(self, name: str) -> None:
        async with self._verb("start", name):
            self._start(name)

    async def stop(self, name: str) -> None:
        async with self._verb("stop", name):
            container = self.containers.get(name)
            if container is not None:
                self._stop(container)

    async def destroy(self, name: str) -> None:
        async with self._verb("destroy", name):
            container = self.containers.pop(name, None)
            if container is not None:
                self._stop(container)

    async def exits(self) -> AsyncIterator[str]:
        while True:
            while self._exited:
                yield self._exited.popleft()
            self._exit_ready = anyio.Event()
            await self._exit_ready.wait()

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        container = self.containers.get(check_name(name))
        await anyio.lowlevel.checkpoint()
        return [] if container is None else container.log[-lines:]

    # --- inside ----------------------------------------------------------------------

    @asynccontextmanager
    async def _verb(self, verb: str, name: str) -> AsyncIterator[None]:
        check_name(name)
        self.calls.append((verb, name))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            gate = self._gates.pop((verb, name), None)
            if gate is not None:
                gate.entered.set()
                await gate.released.wait()
            else:
                await anyio.lowlevel.checkpoint()
            failure = self._failures.get((verb, name))
            if failure is not None:
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        del self._failures[(verb, name)]
                raise ContainerError(failure.message)
            yield
        finally:
            self.in_flight -= 1

    def _start(self, name: str) -> None:
        container = self.containers.get(name)
        if container is None:
            raise ContainerError(f"agent {name} is not created")
        if container.state is ContainerState.RUNNING:
            return
        container.state = ContainerState.RUNNING
        container.pid = next(self._pids)
        container.started_at = self.clock.now()
        container.message = ""
        container.log.append(f"{name} up")
        if name in self._crash_on_start:
            left = self._crash_on_start[name]
            if left is not None:
                if left <= 1:
                    del self._crash_on_start[name]
                else:
                    self._crash_on_start[name] = left - 1
            self.crash(name, "crashing on purpose")

    def _stop(self, container: _Container) -> None:
        if container.state is ContainerState.RUNNING:
            container.log.append(f"{container.build.name} stopped")
        container.state = ContainerState.STOPPED
        container.pid = None
        container.message = ""
