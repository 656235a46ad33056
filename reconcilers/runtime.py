"""The container runtime seam: what the agents reconciler asks of a place agents run in.

A runtime is the only code that touches containers (or processes). The reconciler reads
`observe()` afresh on every run and calls the verbs; it never caches runtime state.
Verbs are idempotent where the real tool allows it (`stop` on a stopped agent is fine).
Failures raise `ContainerError` with the underlying tool's message, which the reconciler
turns into a Stalled or backoff status.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gitstore.spec import AgentSpec, Role

__all__ = ["AgentBuild", "ContainerError", "ContainerState", "Observed", "Runtime"]


class ContainerError(Exception):
    """Raised by a runtime when the container tool fails; the message is shown as-is."""


class ContainerState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    MISSING = "missing"
    CRASHED = "crashed"


@dataclass(frozen=True)
class Observed:
    """What a runtime sees of one agent right now."""

    name: str
    state: ContainerState
    rev: str | None = None
    harness_version: str | None = None
    pid: int | None = None
    started_at: float | None = None
    message: str = ""


@dataclass(frozen=True)
class AgentBuild:
    """Everything needed to build an agent at a desired rev of the applied tree."""

    name: str
    role: Role
    rev: str
    spec: AgentSpec
    harness_version: str
    files: Mapping[str, bytes] = field(default_factory=dict)


class Runtime(Protocol):
    """A place agents run: processes on this host, or nixos-containers."""

    name: str
    # What contains an agent: "bwrap" (a process in a bubblewrap sandbox), "none" (a
    # process with the operator's rights) or "nixos-container".
    sandbox: str

    def name_problem(self, name: str) -> str | None:
        """Why this runtime cannot hold an agent of this name (a plan error), or None."""
        ...

    async def observe(self, name: str) -> Observed: ...

    async def names(self) -> list[str]:
        """Every agent the runtime has, running or not (to find what to destroy)."""
        ...

    async def create(self, build: AgentBuild) -> None: ...

    async def update(self, build: AgentBuild) -> None:
        """Rebuild at the new rev and restart if it was running."""
        ...

    async def start(self, name: str) -> None: ...

    async def stop(self, name: str) -> None: ...

    async def destroy(self, name: str) -> None: ...

    def exits(self) -> AsyncIterator[str]:
        """Yield the name of each agent whose container stopped without being asked."""
        ...

    async def logs(self, name: str, lines: int = 200) -> list[str]: ...
