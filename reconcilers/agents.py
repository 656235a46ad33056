"""The agents reconciler: converge each agent's container to the applied tree.

`reconcile(name)` reads the desired state (the agent's subtree in applied `main` at the
sha hive-c0re recorded, which `GitStore` stands by: a move made behind its back is never
reconciled), the hold, and the observed container afresh, then runs ordered steps,
stopping at the first that acts: `reconcile_removal`, `reconcile_build` (create / update
when the rev or the harness version is stale), `reconcile_running` (start / stop /
crash-loop restart with backoff). A deferred summary always writes status. Crash history
lives in memory: a restart of hive-c0re gives a crash-looping agent a fresh chance, as a
human would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gitstore.spec import role_for
from gitstore.store import GitStore
from gitstore.tree import AgentTree
from reconcilers.backoff import Backoff
from reconcilers.clock import Clock, SystemClock, iso
from reconcilers.queue import Result, TerminalError
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed, Runtime
from reconcilers.status import AgentStatus, Records, Run

__all__ = ["AgentsReconciler", "CrashPolicy"]


@dataclass(frozen=True)
class CrashPolicy:
    limit: int = 5
    window: float = 120.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))


@dataclass
class _Outcome:
    action: str = "none"
    outcome: str = "ok"
    message: str = ""
    reason: str = ""
    stalled: bool = False
    requeue_after: float | None = None


class AgentsReconciler:
    def __init__(
        self,
        git: GitStore,
        runtime: Runtime,
        records: Records,
        *,
        harness_version: str,
        crash: CrashPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.git = git
        self.runtime = runtime
        self.records = records
        self.harness_version = harness_version
        self.crash = crash or CrashPolicy()
        self.clock: Clock = clock or SystemClock()
        self._crashes: dict[str, deque[float]] = {}
        self._restart_at: dict[str, float] = {}

    def forgive(self, name: str) -> None:
        """Forget crash history (an operator asked to start or reconcile)."""
        self._crashes.pop(name, None)
        self._restart_at.pop(name, None)

    async def desired(self, name: str) -> AgentTree | None:
        return await self.git.applied_agent(name)

    async def reconcile(self, name: str) -> Result:
        started = self.clock.now()
        started_iso = iso(self.clock.utcnow())
        desired = await self.desired(name)
        hold = await self.records.hold(name)
        observed = await self.runtime.observe(name)
        out = _Outcome()
        try:
            if desired is None:
                await self.reconcile_removal(observed, out)
            elif desired.spec is None:
                raise TerminalError(desired.error or "invalid spec")
            else:
                await self.reconcile_build(desired, observed, out)
                if out.action != "none":
                    observed = await self.runtime.observe(name)
                await self.reconcile_running(desired, observed, hold, out)
        except ContainerError as exc:
            out.outcome, out.message = "error", str(exc)
            out.reason = "RuntimeError"
            failures = (await self._failures(name)) + 1
            out.requeue_after = self.crash.backoff.delay(failures)
            out.stalled = failures >= self.crash.limit
            if out.stalled:
                out.requeue_after = None
        except TerminalError as exc:
            out.outcome, out.message, out.reason, out.stalled = "error", str(exc), "Invalid", True
        observed = await self.runtime.observe(name)
        await self._summarise(name, desired, observed, hold, out, started, started_iso)
        outcome = "stalled" if out.stalled else out.outcome
        return Result(requeue_after=out.requeue_after, outcome=outcome)

    async def _failures(self, name: str) -> int:
        status = await self.records.status(name)
        return status.failures if status else 0

    async def reconcile_removal(self, observed: Observed, out: _Outcome) -> None:
        if observed.state is not ContainerState.MISSING:
            await self.runtime.destroy(observed.name)
            out.action = "destroy"

    async def reconcile_build(self, desired: AgentTree, observed: Observed, out: _Outcome) -> None:
        assert desired.spec is not None
        build = AgentBuild(
            name=desired.name,
            role=role_for(desired.name),
            rev=desired.rev,
            spec=desired.spec,
            harness_version=self.harness_version,
            files=desired.files,
        )
        if observed.state is ContainerState.MISSING:
            await self.runtime.create(build)
            out.action = "create"
        elif observed.rev != desired.rev or observed.harness_version != self.harness_version:
            await self.runtime.update(build)
            out.action = "update"

    async def reconcile_running(
        self, desired: AgentTree, observed: Observed, hold: str | None, out: _Outcome
    ) -> None:
        assert desired.spec is not None
        name = desired.name
        want_running = desired.spec.enabled and hold is None
        state = observed.state
        if not want_running:
            if state is ContainerState.RUNNING:
                await self.runtime.stop(name)
                out.action = "stop" if out.action == "none" else out.action
            return
        if state is ContainerState.RUNNING:
            return
        if state is ContainerState.CRASHED:
            now = self.clock.now()
            crashes = self._crashes.setdefault(name, deque())
            due = self._restart_at.get(name)
            if due is None:
                crashes.append(now)
                while crashes and now - crashes[0] > self.crash.window:
                    crashes.popleft()
                if len(crashes) >= self.crash.limit:
                    out.stalled, out.reason = True, "CrashLoop"
                    out.message = (
                        f"crashed {len(crashes)} times in "
                        f"{self.crash.window:.0f}s; not restarting. {observed.message}"
                        " Fix it, then `hive start` or `hive reconcile`."
                    )
                    return
                due = now + self.crash.backoff.delay(len(crashes) - 1)
                self._restart_at[name] = due
            if due > now:
                out.action, out.reason = "backoff", "CrashBackoff"
                out.message = f"crashed; restarting in {due - now:.1f}s"
                out.requeue_after = due - now
                return
            self._restart_at.pop(name, None)
            out.action = "restart"
        else:
            out.action = "start" if out.action == "none" else out.action
        await self.runtime.start(name)

    async def _summarise(
        self,
        name: str,
        desired: AgentTree | None,
        observed: Observed,
        hold: str | None,
        out: _Outcome,
        started: float,
        started_iso: str,
    ) -> None:
        duration = (self.clock.now() - started) * 1000
        rev = desired.rev if desired else ""
        run = None
        if out.action != "none" or out.outcome != "ok":
            run = Run(name, started_iso, duration, out.action, out.outcome, out.message, rev)
        if desired is None:
            if run is not None or observed.state is ContainerState.MISSING:
                await self.records.forget(
                    name, run or Run(name, started_iso, duration, "none", "ok", "", "")
                )
            return
        enabled = desired.spec.enabled if desired.spec else False
        want_running = enabled and hold is None
        running = observed.state is ContainerState.RUNNING
        current = observed.rev == desired.rev and observed.harness_version == self.harness_version
        ready = current and running == want_running and out.outcome == "ok" and not out.stalled
        reason = out.reason or (
            "Running"
            if ready and running
            else "Held"
            if ready and hold is not None
            else "Disabled"
            if ready
            else "Progressing"
        )
        message = out.message or (f"held: {hold}" if hold else "")
        failures = 0
        if out.outcome != "ok":
            failures = (await self._failures(name)) + 1
        status = AgentStatus(
            name=name,
            desired_rev=rev,
            observed_rev=observed.rev or "",
            state=observed.state.value,
            ready=ready,
            reconciling=not ready and not out.stalled,
            stalled=out.stalled,
            reason=reason,
            message=message,
            failures=failures,
        )
        previous = await self.records.status(name)
        if run is not None or previous != status:
            await self.records.record(status, run)
