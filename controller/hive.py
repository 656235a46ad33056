"""The composition: every controller-managed component, built once and served together.

`Hive.serve()` runs, under one task group: the audit log, then the gate opens (its record
of applied moves read, a crash's leftovers finished, `controller.gate`), the runtime's
exit watcher, the ref watchers on `proposed.git` (proposals) and `applied.git` (the
gate's check), the proposals, gate and agents work queues, the periodic resync and the
admin socket (plus what later components add). Triggers only *queue keys*:
- the applied ref moved (approve): the agents whose subtree oid changed, and a proposals
  pass (proposed main follows, pending plans are brought up to date);
- a container exited: that agent;
- resync: every agent whose recorded status, desired rev, observed rev, harness version
  or running state disagree (drift), found in one cheap pass instead of N reconciles;
- admin `reconcile`: the named agent or all.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import anyio
from anyio.abc import TaskStatus

from controller.activity import Activity
from controller.approvals import ApprovalBook
from controller.broker import Broker
from controller.bus import Bus, EventType
from controller.enforcement import Enforcer
from controller.eventlog import EventLog
from controller.gate import Gate
from controller.metrics import Metrics
from controller.notify import Notifier
from controller.questions import Questions
from controller.quotas import BrokerLimits
from controller.records import StoreRecords
from controller.settings import Settings
from controller.store import Store
from controller.tokens import TokenBook
from controller.usage import Usage
from controller.warm import WarmSlots
from gitstore.follow import MainState, ProposedMain
from gitstore.policy import AgentLimits, Policy
from gitstore.store import GitStore
from gitstore.tree import AgentTree
from gitstore.watch import serve_ref_watcher
from reconcilers.agents import AgentsReconciler, CrashPolicy
from reconcilers.backoff import Backoff
from reconcilers.clock import Clock, SystemClock
from reconcilers.layout import Layout
from reconcilers.process import ProcessRuntime, default_harness_command
from reconcilers.proposals import ProposalsReconciler
from reconcilers.queue import Result, WorkQueue
from reconcilers.runtime import ContainerState, Runtime

__all__ = ["PROPOSALS", "Applied", "Hive"]

log = logging.getLogger(__name__)
PROPOSALS = "proposals"
GATE = "gate"
AGENT_TREE_CACHE = 1024


@dataclass(frozen=True)
class Applied:
    """Applied `main` as hive-c0re last saw it move: its sha and `{name: subtree oid}`.

    Only hive-c0re moves applied `main`, so this cache is exact between moves, and the
    hot readers (`status`, who may be messaged, the dashboard) need no git at all."""

    sha: str
    revs: Mapping[str, str]
    names: frozenset[str]

    @classmethod
    def of(cls, sha: str, revs: Mapping[str, str]) -> Applied:
        return cls(sha, MappingProxyType(dict(revs)), frozenset(revs))


class Hive:
    def __init__(
        self, settings: Settings, runtime: Runtime | None = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.layout = Layout(settings.state_dir, settings.runtime_dir)
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.bus = Bus()
        self.metrics = Metrics()
        # When the proposed repo's refs were first seen moving since the last proposals
        # pass (the start of push -> pending latency); None after a pass.
        self._proposals_seen: float | None = None
        self.store = Store(settings.state_dir / "hive.sqlite")
        self.git = GitStore(settings.state_dir, settings.limits)
        # Tokens for git over HTTP (`hive token create`), checked by the dashboard's /git/.
        self.tokens = TokenBook(settings.state_dir / "tokens.json")
        # Who a ServiceAccount token is (an agent's name), while the agent protocol is
        # served over TLS (`controller.agent_tls` sets it); git over HTTP asks it too.
        self.identify: Callable[[str], Awaitable[str]] | None = None
        self.agent_tls_port: int | None = None  # set once the TLS listener is bound
        self.records = StoreRecords(self.store, self.bus)
        self.gate = Gate(self.store, self.bus, self.git)
        # How proposed `main` stands to applied `main`, as the proposals reconciler saw it.
        self.proposed_main: ProposedMain | None = None
        # Read at the start of `serve()` (`load_applied`), then kept by `applied_moved`.
        self.applied = Applied.of("", {})
        # The hive's policy (hive.toml) at applied main, kept with it by `applied_moved`.
        self.policy = Policy()
        self.policy_error: str | None = None
        self._limits: dict[str, AgentLimits] = {}  # by agent, for applied main as cached
        self._applied_lock = anyio.Lock()
        # (name, subtree oid) -> parsed agent: a rev's content never changes.
        self._agent_trees: OrderedDict[tuple[str, str], AgentTree] = OrderedDict()
        self.runtime: Runtime = runtime or self._make_runtime()
        self.approvals = ApprovalBook(
            self.store,
            self.bus,
            self.git,
            self.gate,
            self.applied_moved,
            self.runtime.name_problem,
        )
        backoff = Backoff(settings.backoff_base, settings.backoff_cap)
        self.agents = AgentsReconciler(
            self.git,
            self.runtime,
            self.records,
            harness_version=settings.harness_version,
            crash=CrashPolicy(
                settings.crash_limit,
                settings.crash_window,
                Backoff(settings.crash_backoff, settings.backoff_cap),
            ),
            clock=self.clock,
        )
        self.agent_queue = WorkQueue(
            self.agents.reconcile,
            workers=settings.workers,
            backoff=backoff,
            clock=self.clock,
            observe=self.metrics.reconciled,
        )
        self.broker = Broker(
            self.store,
            self.bus,
            BrokerLimits(
                message_bytes=settings.message_max_bytes,
                inbox_messages=settings.inbox_max_messages,
                inbox_bytes=settings.inbox_max_bytes,
                send_bytes_per_minute=settings.send_max_bytes_per_minute,
            ),
            clock=self.clock,
            page_bytes=settings.page_max_bytes,
        )
        self.eventlog = EventLog(self.store, self.bus)
        self.questions = Questions(
            self.store,
            self.bus,
            self.broker,
            clock=self.clock,
            poll=settings.question_poll,
        )
        self.turns: dict[str, dict[str, Any]] = {}
        self.usage = Usage(self.store, self.clock)
        self.enforcer = Enforcer(
            self.usage,
            self.records,
            self.runtime,
            self.bus,
            self.clock,
            policy=lambda: self.policy,
            limits_for=self.limits_for,
            names=lambda: sorted(self.applied.names),
            released=self.agent_queue.add,
            poll=settings.limits_poll,
        )
        # Which agent-socket connection last reported each agent's turn state: when it
        # closes, the turn is offline (unless a newer connection reported since).
        self.turn_reporters: dict[str, int] = {}
        self.warm = WarmSlots(settings.warm_max)
        self.notifier = Notifier(self, self.metrics)
        self.activity = Activity(self.bus)
        self.proposals = ProposalsReconciler(
            self.git, self.approvals, self.runtime.name_problem, on_main=self._main_seen
        )
        self.proposal_queue = WorkQueue(
            self._reconcile_proposals, workers=1, backoff=backoff, clock=self.clock
        )
        self.gate_queue = WorkQueue(self._check_gate, workers=1, backoff=backoff, clock=self.clock)
        self._extra: list[Callable[[anyio.abc.TaskGroup], Awaitable[None]]] = []
        self.dashboard_port: int | None = None  # set by the dashboard once it listens

    def _make_runtime(self) -> Runtime:
        if self.settings.runtime == "kubernetes":
            from reconcilers.kubernetes import KubernetesRuntime

            assert self.settings.kube is not None  # Settings.from_env reads it
            return KubernetesRuntime(
                self.settings.kube,
                self.layout,
                watch_backoff=Backoff(self.settings.backoff_base, self.settings.backoff_cap),
            )
        if self.settings.runtime == "nixos":
            from reconcilers.nixos import NixosRuntime

            return NixosRuntime(
                self.settings.state_dir,
                self.settings.runtime_dir,
                hyperhive_flake=self.settings.environ.get("HIVE_HYPERHIVE_FLAKE", ""),
                nixpkgs_flake=self.settings.environ.get("HIVE_NIXPKGS_FLAKE", "nixpkgs"),
                env=self.settings.environ,
            )
        command = self.settings.harness_command
        return ProcessRuntime(
            self.layout,
            proposed_repo=self.git.proposed_path,
            harness_command=(lambda role: list(command)) if command else default_harness_command,
            environ=self.settings.environ,
            stop_grace=self.settings.stop_grace,
            sandboxed=not self.settings.unsandboxed,
        )

    # --- triggers ------------------------------------------------------------------

    async def _reconcile_proposals(self, _key: str) -> Result:
        seen, self._proposals_seen = self._proposals_seen, None
        with self.bus.subscribe(types=(EventType.APPROVAL_CREATED,)) as created:
            await self.proposals.reconcile()
            if seen is not None:
                latency = self.clock.now() - seen
                while True:
                    try:
                        created.next_nowait()
                    except anyio.WouldBlock:
                        break
                    self.metrics.push_to_pending.observe(latency)
        return Result()

    def proposals_changed(self, reason: str) -> None:
        if reason == "change" and self._proposals_seen is None:
            self._proposals_seen = self.clock.now()
        self.proposal_queue.add(PROPOSALS)

    async def _check_gate(self, _key: str) -> Result:
        await self.gate.check()
        return Result()

    def applied_changed(self, reason: str) -> None:
        """Applied's refs may have moved (ours or not): the gate compares them."""
        self.gate_queue.add(GATE)

    def _main_seen(self, main: ProposedMain) -> None:
        previous, self.proposed_main = self.proposed_main, main
        if main.followed_from is not None:
            self.bus.publish(EventType.PROPOSED_FOLLOWED, old=main.followed_from, new=main.sha)
        if main.state is MainState.DIVERGED and (
            previous is None or previous.as_json() != main.as_json()
        ):
            self.bus.publish(
                EventType.PROPOSED_DIVERGED, sha=main.sha, applied_sha=self.applied.sha
            )

    @property
    def applied_names(self) -> frozenset[str]:
        """Who may be messaged (asked on every send): the agents of applied `main`."""
        return self.applied.names

    async def load_applied(self) -> Applied:
        """Read applied `main` into the cache (at start; `applied_moved` keeps it)."""
        async with self._applied_lock:
            sha, revs = await self.git.applied_state()
            self.applied = Applied.of(sha, revs)
            await self._load_policy(sha)
            return self.applied

    async def _load_policy(self, sha: str) -> None:
        self.policy, self.policy_error = await self.git.applied_policy(sha or None)
        self._limits = {}
        if self.policy_error is not None:
            log.warning(
                "hive.toml at applied main is not valid (defaults apply): %s", self.policy_error
            )

    async def limits_for(self, name: str) -> AgentLimits:
        """The limits that hold for one agent: hive.toml, overridden by its agent.toml
        (asked on every send: kept per agent until applied main moves)."""
        found = self._limits.get(name)
        if found is not None:
            return found
        desired = await self.applied_agent(name)
        limits = self.policy.for_agent(desired.spec if desired is not None else None)
        if len(self._limits) < AGENT_TREE_CACHE:
            self._limits[name] = limits
        return limits

    async def applied_agent(self, name: str) -> AgentTree | None:
        """One agent of the cached applied `main`, parsed; git only for an unseen rev."""
        applied = self.applied
        rev = applied.revs.get(name)
        if rev is None:
            return None
        key = (name, rev)
        found = self._agent_trees.get(key)
        if found is None:
            found = await self.git.applied_agent(name, applied.sha)
            if found is None:
                return None
            self._agent_trees[key] = found
            while len(self._agent_trees) > AGENT_TREE_CACHE:
                self._agent_trees.popitem(last=False)
        else:
            self._agent_trees.move_to_end(key)
        return found

    async def applied_moved(self, old: str, new: str) -> None:
        async with self._applied_lock:
            known = self.applied
            before = known.revs if known.sha == old else await self.git.applied_revs(old)
            after = await self.git.applied_revs(new)
            self.applied = Applied.of(new, after)
            await self._load_policy(new)
            self.enforcer.wake()  # a limit may have been raised
            changed = _changed(before, after)
            self.bus.publish(EventType.APPLIED_MOVED, old=old, new=new, agents=changed)
            self.metrics.applied_moves.inc()
            for name in changed:
                self.agent_queue.add(name)
            # Proposed main follows, pending plans are brought up to date.
            self.proposal_queue.add(PROPOSALS)

    async def resync(self) -> list[str]:
        """Queue every agent that drifted from its desired state; returns their names."""
        desired = await self.git.applied_revs()
        statuses = await self.records.statuses()
        names = set(desired) | set(statuses) | set(await self.runtime.names())
        drifted = []
        for name in sorted(names):
            status = statuses.get(name)
            observed = await self.runtime.observe(name)
            # A ready status was written when the agent was as desired (holds included),
            # so drift is anything that no longer matches what that status saw.
            if (
                status is None
                or not status.ready
                or name not in desired
                or desired[name] != observed.rev
                or observed.harness_version != self.settings.harness_version
                or (observed.state is ContainerState.RUNNING) != (status.state == "running")
            ):
                drifted.append(name)
                self.agent_queue.add(name)
        return drifted

    async def reconcile(self, name: str | None = None) -> list[str]:
        """Admin `reconcile`: queue one agent (forgiving its crash loop) or all."""
        if name is not None:
            self.agents.forgive(name)
            self.agent_queue.add(name)
            return [name]
        names = sorted(self.applied.names | set(await self.runtime.names()))
        for n in names:
            self.agents.forgive(n)
            self.agent_queue.add(n)
        self.proposal_queue.add(PROPOSALS)
        return names

    def set_turn(self, name: str, turn: dict[str, Any]) -> None:
        """An agent reported its turn state (idle / thinking / offline); leaving
        `thinking` with a `last_turn` ends a turn (counted in the metrics)."""
        previous = self.turns.get(name, {})
        published = self.bus.publish(EventType.AGENT_TURN, agent=name, **turn)
        self.turns[name] = {**turn, "since": published.ts}
        last = turn.get("last_turn")
        ended = previous.get("state") == "thinking" and turn.get("state") != "thinking"
        if ended and isinstance(last, dict) and last != previous.get("last_turn"):
            self.metrics.turn_ended(name, last)

    # --- serving -------------------------------------------------------------------

    def add_component(self, serve: Callable[[anyio.abc.TaskGroup], Awaitable[None]]) -> None:
        """Add a component started (with `await serve(tg)`) once the core is up."""
        self._extra.append(serve)

    async def serve(self, *, task_status: TaskStatus[Hive] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                # The audit log first: what the gate finds at start is an event too.
                await tg.start(self.eventlog.serve)
                await tg.start(self.activity.serve)
                await self.open_gate()
                await self.load_applied()
                serve_runtime = getattr(self.runtime, "serve", None)
                if serve_runtime is not None:
                    await tg.start(serve_runtime)
                await tg.start(self.store.serve_checkpoints)
                await tg.start(self.broker.serve)
                await tg.start(self.questions.serve)
                await tg.start(self.enforcer.serve)
                await tg.start(self.notifier.serve)
                await tg.start(self.agent_queue.serve)
                await tg.start(self.proposal_queue.serve)
                await tg.start(self.gate_queue.serve)
                tg.start_soon(self._watch_exits)
                await tg.start(
                    lambda task_status: serve_ref_watcher(
                        self.git.proposed_path,
                        self.proposals_changed,
                        resync=self.settings.resync_interval,
                        task_status=task_status,
                    )
                )
                await tg.start(
                    lambda task_status: serve_ref_watcher(
                        self.git.applied_path,
                        self.applied_changed,
                        resync=self.settings.resync_interval,
                        task_status=task_status,
                    )
                )
                tg.start_soon(self._resync_loop)
                for serve in self._extra:
                    await serve(tg)
                task_status.started(self)
        finally:
            self.store.close()

    async def _watch_exits(self) -> None:
        async for name in self.runtime.exits():
            self.bus.publish(EventType.AGENT_EXITED, agent=name)
            self.agent_queue.add(name)

    async def open_gate(self) -> None:
        """At start: the gate reads its record and finishes what a crash interrupted (a
        merge that landed is recorded, its approval approved); claims left are released."""
        for move, approval in await self.gate.open(self.approvals.settle_merged):
            if approval is not None:
                self.bus.publish(EventType.APPROVAL_APPROVED, approval=approval)
            if move.old != move.new:
                changed = _changed(
                    await self.git.applied_revs(move.old), await self.git.applied_revs(move.new)
                )
                self.bus.publish(
                    EventType.APPLIED_MOVED,
                    old=move.old,
                    new=move.new,
                    agents=changed,
                    recovered=True,
                )
        await self.approvals.release_claims()

    async def _resync_loop(self) -> None:
        while True:
            try:
                await self.gate.check()
                await self.resync()
            except Exception:
                log.exception("resync failed")
            await self.clock.sleep(self.settings.resync_interval)


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The agents whose subtree differs between two `{name: rev}` maps."""
    return sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
