"""What a reconcile reports, and the seam through which it is recorded.

Conditions follow Flux: `Ready` (the agent is as desired), `Reconciling` (an action is
under way) and `Stalled` (retrying will not help until something changes), each with a
reason and a message. The controller implements `Records` over its sqlite store; the
reconcilers only see this protocol, so imports keep flowing one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AgentStatus", "Records", "Run"]


@dataclass(frozen=True)
class AgentStatus:
    name: str
    desired_rev: str
    observed_rev: str
    state: str
    ready: bool
    reconciling: bool
    stalled: bool
    reason: str
    message: str
    failures: int = 0


@dataclass(frozen=True)
class Run:
    name: str
    started_at: str
    duration_ms: float
    action: str
    outcome: str
    message: str
    rev: str


class Records(Protocol):
    async def hold(self, name: str) -> str | None:
        """The reason an operator holds this agent stopped, or None."""
        ...

    async def status(self, name: str) -> AgentStatus | None: ...

    async def record(self, status: AgentStatus, run: Run | None) -> None:
        """Write the agent's status (and the run, when something was done)."""
        ...

    async def forget(self, name: str, run: Run) -> None:
        """The agent is gone from desired and observed state: drop its status."""
        ...
