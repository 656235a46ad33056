"""The hive's domain operations: the one home of what the operator and the agents can do.

The host socket (`controller.admin`), the agent sockets (`controller.agent_api`) and the
dashboard (`ui`) are thin adapters: they check who is asking and translate a request into
a call here, and turn the typed result (`controller.values`) into JSON; none of them calls
another's handler. Rules that hold whoever asks live here: who may be messaged, which
agents exist, that a disabled agent is not started, that `stop` and `kill` leave a hold
the reconciler honours until `start` clears it.

What proposes a change to the desired state (spawn, apply a commit) is in
`controller.changes`; these operations delegate to it.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import anyio

from controller.activity import ActivityLine, run_line
from controller.broker import OPERATOR
from controller.bus import Subscription
from controller.changes import ChangeRequests
from controller.enforcement import LIMIT_HOLDS
from controller.errors import ConflictError, HiveError, InvalidError, NotFoundError
from controller.events import EventType
from controller.gate import Alarm
from controller.hive import Hive
from controller.notify import Delivery
from controller.paging import Page
from controller.protocol import ProtocolError
from controller.quotas import RateLimitError
from controller.rollback import Rollbacks
from controller.tokens import NewToken, TokenInfo
from controller.turn_control import cancel_turn
from controller.values import (
    AgentRow,
    AgentSpend,
    AppliedReset,
    Approval,
    ApprovalPatch,
    CancelledQuestions,
    Destroyed,
    Identity,
    MainSummary,
    Message,
    Permission,
    Purged,
    Question,
    Queued,
    Repos,
    Sent,
    Status,
    TurnCancel,
    UsageRow,
)
from controller.version import VERSION
from gitstore.diff import ApprovalDiff, unified
from gitstore.follow import ProposedMain
from gitstore.spec import MANAGER, InvalidNameError, check_name, role_for
from gitstore.tree import AgentTree
from reconcilers.runtime import ContainerError, ContainerState
from reconcilers.status import AgentStatus

__all__ = ["LIFECYCLE", "PERMISSION_OPTIONS", "Operations", "Verb"]

PERMISSION_OPTIONS = ("allow once", "deny")

Verb = Literal["start", "stop", "restart", "kill"]
LIFECYCLE: tuple[Verb, ...] = ("start", "stop", "restart", "kill")
JSONObject = dict[str, object]


def checked_name(name: str) -> str:
    """`name` if it is a valid agent name; an `invalid` error saying why otherwise."""
    try:
        return check_name(name)
    except InvalidNameError as exc:
        raise InvalidError(str(exc)) from exc


class Operations:
    def __init__(self, hive: Hive) -> None:
        self.hive = hive
        self.changes = ChangeRequests(hive)
        self.rollbacks = Rollbacks(hive, self.changes)

    # --- the hive --------------------------------------------------------------------

    async def status(self) -> Status:
        hive = self.hive
        applied = hive.applied  # the hive's cache of applied main: no git on this path
        return Status(
            version=VERSION,
            harness_version=hive.settings.harness_version,
            runtime=hive.runtime.name,
            sandbox=hive.runtime.sandbox,
            applied_sha=applied.sha,
            agents=len(applied.revs),
            pending_approvals=await hive.approvals.count_pending(),
            pending_questions=await hive.questions.count("pending"),
            alarm=hive.gate.alarm,
            proposed_main=(
                MainSummary(main.sha, main.state.value)
                if (main := hive.proposed_main) is not None
                else None
            ),
        )

    def repos(self) -> Repos:
        git = self.hive.git
        return Repos(proposed=str(git.proposed_path), applied=str(git.applied_path))

    def applied_sha(self) -> str:
        return self.hive.applied.sha

    async def harness_key_matches(self, agent: str, key: str) -> bool:
        """Whether `key` is the one minted for `agent`'s running harness."""
        path = self.hive.layout.harness_key(agent)
        expected = await anyio.to_thread.run_sync(_read_key, path)
        return bool(expected) and hmac.compare_digest(key.encode(), expected or b"")

    # --- tokens for git over HTTP ------------------------------------------------------

    async def create_token(self, name: str | None = None) -> NewToken:
        return await self.hive.tokens.create(name)

    async def git_user(self, password: str) -> str | None:
        """Who a git-over-HTTP request's password makes the caller, or None: a token of
        `hive token create`, or in a cluster the manager's ServiceAccount token (no other
        agent pushes to the proposed repo; they go through the manager)."""
        name = self.hive.tokens.check(password)
        if name is not None or self.hive.identify is None or password.startswith("hht_"):
            return name
        try:
            agent = await self.hive.identify(password)
        except (HiveError, ProtocolError):
            return None
        return f"serviceaccount:{agent}" if agent == MANAGER else None

    def tokens(self) -> list[TokenInfo]:
        return self.hive.tokens.list()

    async def revoke_token(self, name: str) -> TokenInfo:
        return await self.hive.tokens.revoke(name)

    def alarm(self) -> Alarm | None:
        """The gate's alarm: applied main moved outside hive-c0re (None when it agrees)."""
        return self.hive.gate.alarm

    def proposed_main(self) -> ProposedMain | None:
        return self.hive.proposed_main

    async def applied_reset(self, approver: str = OPERATOR) -> AppliedReset:
        """Resolve the alarm: move applied main back to the sha hive-c0re recorded."""
        reset = await self.hive.gate.reset(approver)
        return AppliedReset(reset["recorded_sha"], reset["found_sha"])

    async def applied_adopt(self, approver: str = OPERATOR) -> Approval:
        """Resolve the alarm: propose the found sha as an approval (applied main goes back
        to the recorded sha until that approval is approved)."""
        ref, sha = await self.hive.gate.adopt(approver)
        approval = await self.changes.approval_for(ref, sha)
        return await self.hive.approvals.set_note(
            approval.id, "adopted: applied main was moved to this commit outside hive-c0re"
        )

    async def metrics(self) -> bytes:
        """The Prometheus exposition of the hive (`controller.metrics`)."""
        return await self.hive.metrics.scrape(self.hive)

    async def notify_test(self) -> list[Delivery]:
        """Send a test notification to every `[[notify]]` target of hive.toml, once each."""
        return await self.hive.notifier.test()

    def notify_problem(self) -> str | None:
        """Why hive.toml's [[notify]] tables cannot be read (None when they can)."""
        return self.hive.notifier.problem

    def sandbox(self) -> str:
        """How agents are contained: `bwrap`, `nixos-container`, or `none` (--unsandboxed)."""
        return self.hive.runtime.sandbox

    @contextmanager
    def subscribe(self, buffer: int = 10_000) -> Iterator[Subscription]:
        """Every event from now on (the `watch` stream, the dashboard's SSE)."""
        with self.hive.bus.subscribe(buffer) as sub:
            yield sub

    def page(self, limit: int, before_id: int | None = None, after_id: int | None = None) -> Page:
        """A page of a list answer: `limit` rows at most, within the settings' bytes."""
        return Page(limit, before_id, after_id, budget=self.hive.settings.page_max_bytes)

    async def events(
        self, limit: int = 100, type_prefix: str = "", before_id: int | None = None
    ) -> list[JSONObject]:
        """The audit log, newest first, only types starting with `type_prefix`."""
        page = self.page(limit, before_id)
        return list(await self.hive.eventlog.recent(type_prefix=type_prefix, page=page))

    # --- agents ----------------------------------------------------------------------

    async def agent_names(self) -> list[str]:
        """Every agent that is applied or has a container."""
        return sorted(set(await self.hive.runtime.names()) | self.hive.applied_names)

    async def agents(self) -> list[AgentRow]:
        hive = self.hive
        desired = await hive.git.applied_agents(hive.applied.sha or None)
        statuses = await hive.records.statuses()
        holds = await hive.records.holds()
        spend, _ = await hive.usage.spend()
        return [
            await self._row(
                name, desired.get(name), statuses.get(name), holds.get(name), spend.get(name)
            )
            for name in sorted(set(desired) | set(statuses))
        ]

    async def agent(self, name: str) -> AgentRow:
        hive = self.hive
        desired = await hive.applied_agent(name)
        status = await hive.records.status(name)
        spend, _ = await hive.usage.spend()
        return await self._row(
            name, desired, status, await hive.records.hold(name), spend.get(name)
        )

    async def spend_summary(self) -> tuple[dict[str, AgentSpend], AgentSpend]:
        """Today's and the total spend and tokens, per agent and of the hive."""
        return await self.hive.usage.spend()

    async def usage(
        self, agent: str | None = None, since: str | None = None, limit: int = 1000
    ) -> list[UsageRow]:
        """Spend and tokens per agent and UTC day, newest day first."""
        if agent is not None:
            checked_name(agent)
        return await self.hive.usage.by_day(agent, since, limit)

    async def _row(
        self,
        name: str,
        desired: AgentTree | None,
        status: AgentStatus | None,
        hold: str | None,
        spend: AgentSpend | None = None,
    ) -> AgentRow:
        observed = await self.hive.runtime.observe(name)
        spec = desired.spec if desired is not None else None
        state = observed.state.value
        if status is not None and status.reconciling and desired is not None:
            if observed.state is ContainerState.MISSING:
                state = "creating"
            elif observed.rev != desired.rev:
                state = "updating"
        turn = self.hive.turns.get(name, {})
        return AgentRow(
            name=name,
            role=role_for(name),
            enabled=bool(spec.enabled) if spec else False,
            description=spec.description if spec else "",
            model=spec.model if spec else None,
            state=state,
            ready=bool(status.ready) if status else False,
            reason=status.reason if status else "Pending",
            stalled=bool(status.stalled) if status else False,
            desired_rev=desired.rev if desired is not None else "",
            observed_rev=observed.rev or "",
            harness_version=observed.harness_version or "",
            hold=hold,
            message=(status.message if status else "") or observed.message,
            error=desired.error if desired is not None else None,
            # What the harness last reported: idle / thinking / offline, with a reason.
            turn=str(turn.get("state", "unknown")),
            turn_reason=str(turn.get("reason", "")),
            spend_today_usd=round(spend.today_usd, 6) if spend else 0.0,
            spend_total_usd=round(spend.total_usd, 6) if spend else 0.0,
            tokens_today=spend.today_tokens if spend else 0,
            tokens_total=spend.total_tokens if spend else 0,
        )

    async def known(self, name: str) -> str:
        """`name` if it is an agent that exists (applied or with a container)."""
        return await self._known(name)

    async def _known(self, name: str) -> str:
        name = checked_name(name)
        if (
            name not in self.hive.applied_names
            and (await self.hive.runtime.observe(name)).state is ContainerState.MISSING
        ):
            raise NotFoundError(f"no agent {name!r}; `hive agents` lists them")
        return name

    async def lifecycle(self, name: str, verb: Verb) -> AgentRow:
        """start / stop / restart / kill: on the runtime directly (not config). `stop`
        and `kill` leave a hold; `start` and `restart` clear it and forgive a crash loop."""
        hive = self.hive
        name = await self._known(name)
        try:
            if verb in ("stop", "kill"):
                await hive.records.set_hold(
                    name, "stop by operator" if verb == "stop" else "killed"
                )
                await hive.runtime.stop(name)
            else:
                desired = await hive.applied_agent(name)
                if desired is not None and desired.spec is not None and not desired.spec.enabled:
                    raise ConflictError(
                        f"{name} is disabled in its agent.toml; enable it by a "
                        "commit to the proposed repo"
                    )
                held = await hive.records.hold(name)
                if held in LIMIT_HOLDS:  # the operator lets it run past its limit, for now
                    hive.enforcer.excuse(name, held)
                await hive.records.set_hold(name, None)
                hive.agents.forgive(name)
                if verb == "restart":
                    await hive.runtime.stop(name)
                if (await hive.runtime.observe(name)).state is not ContainerState.MISSING:
                    await hive.runtime.start(name)
        except ContainerError as exc:
            raise ConflictError(f"{verb} {name} failed: {exc}") from exc
        hive.agent_queue.add(name)
        hive.bus.publish(EventType(f"agent.{verb}"), agent=name)
        return await self.agent(name)

    async def destroy(self, name: str, *, purge: bool = False) -> Destroyed:
        """Remove an agent's leftovers from the runtime (and with `purge` its claim or
        dirs: notes, history, credentials). Only for an agent that applied main no longer
        has: what should run changes through git."""
        name = checked_name(name)
        if name in self.hive.applied.names:
            raise ConflictError(
                f"{name} is in applied main: remove agents/{name}/ through an approval first"
            )
        runtime = self.hive.runtime
        try:
            await runtime.destroy(name)
            purged = False
            if purge:
                purger = getattr(runtime, "purge", None)
                if purger is None:
                    raise InvalidError(f"the {runtime.name} runtime cannot purge an agent")
                purged = bool(await purger(name))
        except ContainerError as exc:
            raise ConflictError(str(exc)) from exc
        self.hive.bus.publish(EventType.AGENT_REMOVED, agent=name, purged=purged, by="destroy")
        message = (
            "destroyed; its notes, history and credentials were deleted"
            if purged
            else ("destroyed; its notes, history and credentials are kept (--purge deletes them)")
        )
        return Destroyed(name, purged, message)

    async def reconcile(self, name: str | None = None) -> Queued:
        """Queue a reconcile of one agent (forgiving its crash loop) or of all."""
        if name is not None:
            name = await self._known(name)
        return Queued(tuple(await self.hive.reconcile(name)))

    async def logs(self, name: str, lines: int) -> list[str]:
        if name not in await self.agent_names():
            raise NotFoundError(f"no agent {name!r}")
        return list(await self.hive.runtime.logs(name, lines))

    def spend(self) -> dict[str, float]:
        """US dollars each agent's turns cost since hive-c0re started (as claude says)."""
        return dict(self.hive.metrics.spend)

    async def activity(self, name: str, limit: int = 300) -> list[ActivityLine]:
        """What `name` did lately, newest first: its turns, errors, exits, holds and
        lifecycle (since hive-c0re started) and its reconcile runs (stored)."""
        if name not in await self.agent_names():
            raise NotFoundError(f"no agent {name!r}")
        runs = [run_line(r) for r in await self.hive.records.runs(name, limit)]
        lines = self.hive.activity.lines(name) + runs
        return sorted(lines, key=lambda line: line.ts, reverse=True)[:limit]

    def turns(self) -> dict[str, JSONObject]:
        """What each harness last reported of its turn (state, reason, model, since)."""
        return dict(self.hive.turns)

    async def conditions(self) -> dict[str, AgentStatus]:
        """Each agent's last recorded reconcile status."""
        return await self.hive.records.statuses()

    async def holds(self) -> dict[str, str]:
        return await self.hive.records.holds()

    async def runs(self, name: str | None = None, limit: int = 50) -> list[JSONObject]:
        """Reconcile runs, newest first, of one agent or all."""
        return list(await self.hive.records.runs(name, limit))

    def desired_revs(self) -> dict[str, str]:
        """`{name: subtree oid}` of every agent at applied main."""
        return dict(self.hive.applied.revs)

    async def proposed_heads(self) -> dict[str, str]:
        return await self.hive.git.proposed_heads()

    async def approval_diffs(self, pairs: Sequence[tuple[str, str]]) -> Sequence[ApprovalDiff]:
        """What each `(base, sha)` changes, as the dashboard shows it on a card."""
        return await self.hive.git.approval_diffs(pairs)

    async def report_turn(self, name: str, turn: JSONObject, reporter: int | None = None) -> None:
        """A harness reported its turn state (idle / thinking / offline), on the
        connection `reporter` (its closing makes the turn offline)."""
        if turn.get("state") not in ("idle", "thinking", "offline"):
            raise InvalidError("state must be idle, thinking or offline")
        last = turn.get("last_turn")
        if isinstance(last, dict):
            # Accounting, then the limits: a turn that crossed one holds the agent.
            recorded = await self.hive.enforcer.turn_finished(name, last)
            if recorded is not None:
                self.hive.bus.publish(
                    EventType.AGENT_USAGE,
                    agent=name,
                    cost_usd=recorded.cost_usd or 0.0,
                    status=recorded.status,
                )
        if reporter is not None:
            self.hive.turn_reporters[name] = reporter
        self.hive.set_turn(name, dict(turn))

    def reporter_gone(self, name: str, reporter: int, why: str) -> None:
        """The connection that reported `name`'s turns closed: nothing runs its turns."""
        if self.hive.turn_reporters.get(name) != reporter:
            return  # a newer harness reports now
        del self.hive.turn_reporters[name]
        last = self.hive.turns.get(name, {})
        self.hive.set_turn(
            name,
            {
                "state": "offline",
                "reason": why,
                "model": last.get("model"),
                "last_turn": last.get("last_turn"),
            },
        )

    async def ask_permission(self, agent: str, tool: str, detail: str) -> Permission:
        """Ask the operator whether `agent` may make this tool call; waits for the
        answer (allow once / deny), or the expiry (denied). Cancelled: the question is."""
        questions = self.hive.questions
        ttl = max(1, round(self.hive.settings.permission_ttl))
        text = f"{agent} wants {tool}: `{detail}`" if detail else f"{agent} wants {tool}"
        asked = await questions.ask(
            agent, text, list(PERMISSION_OPTIONS), ttl_seconds=ttl, kind="permission"
        )
        try:
            decided = await questions.wait(asked.id)
        finally:
            # Still pending only when the harness stopped waiting (its turn ended).
            with anyio.CancelScope(shield=True), contextlib.suppress(ConflictError):
                await questions.cancel(asked.id)
        allow = decided.status == "answered" and decided.answer == PERMISSION_OPTIONS[0]
        return Permission(decided.id, decided.status, allow)

    async def hold_warm(self, agent: str) -> str:
        """Hold one of the host's warm-session slots until it is taken back."""
        return await self.hive.warm.hold(agent)

    async def cancel_turn(self, name: str) -> TurnCancel:
        """Interrupt `name`'s running turn (its harness acknowledges the message)."""
        name = await self._known(name)
        cancelled = await cancel_turn(self.hive.layout.page_socket(name), name)
        if cancelled:
            self.hive.bus.publish(EventType.AGENT_CANCEL, agent=name)
        return TurnCancel(name, cancelled)

    async def identity(self, name: str) -> Identity:
        """Who the agent is and how its harness runs it (asked at every turn)."""
        hive = self.hive
        desired = await hive.applied_agent(name)
        spec = desired.spec if desired is not None else None
        prompt = desired.files.get("prompt.md", b"").decode("utf-8", "replace") if desired else ""
        return Identity(
            name=name,
            role=role_for(name),
            model=(spec.model if spec else None) or hive.settings.environ.get("HIVE_MODEL"),
            prompt=prompt,
            allowed_tools=tuple(spec.allowed_tools) if spec else (),
            description=spec.description if spec else "",
            max_tool_calls_per_turn=(await hive.limits_for(name)).max_tool_calls_per_turn,
        )

    # --- messages --------------------------------------------------------------------

    def recipient(self, to: str) -> str:
        """A name messages can go to: the operator or an applied agent."""
        if to == OPERATOR:
            return to
        checked_name(to)
        if to not in self.hive.applied_names:
            raise NotFoundError(f"no agent {to!r} to send to; list_agents shows who exists")
        return to

    async def send(
        self, sender: str, to: str, body: str, idempotency_key: str | None = None
    ) -> Sent:
        """Store a message for `to`; sent again with the same key, it is stored once."""
        if to == sender:
            raise InvalidError(f"{sender} cannot send to itself")
        hive = self.hive
        rate = None if sender == OPERATOR else (await hive.limits_for(sender)).send_per_minute
        try:
            message = await hive.broker.send(
                sender, self.recipient(to), body, idempotency_key=idempotency_key, per_minute=rate
            )
        except RateLimitError as exc:
            hive.enforcer.refused(exc)
            raise
        if rate is not None:
            hive.enforcer.allowed(sender, "send")
        return Sent(message.id)

    async def inbox_purge(self, agent: str, sender: str | None = None) -> Purged:
        """Take `agent`'s undelivered messages (from `sender` only, if given) out of its
        inbox; they stay in `hive messages`, marked purged, and the audit log lists them."""
        agent = await self._known(agent)
        if sender is not None and sender != OPERATOR:
            checked_name(sender)
        purged = await self.hive.broker.purge(agent, sender)
        result = Purged(agent, sender, len(purged), tuple(m.id for m in purged))
        self.hive.bus.publish(
            EventType.MESSAGE_PURGED,
            agent=agent,
            sender=sender,
            purged=len(purged),
            # What was purged, so the audit log keeps it (bodies cut, the first 200).
            messages=[
                {"id": m.id, "sender": m.sender, "created_at": m.created_at, "body": m.body[:200]}
                for m in purged[:200]
            ],
        )
        return result

    async def messages(
        self, agent: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Message]:
        """Recent messages, newest first, optionally to or from one agent."""
        if agent is not None and agent != OPERATOR:
            checked_name(agent)
        return await self.hive.broker.messages(agent, limit, before_id)

    async def traffic(self) -> list[JSONObject]:
        """Who talks to whom: message counts per (sender, recipient)."""
        return list(await self.hive.broker.counts())

    async def inbox(
        self, agent: str, limit: int = 100, after_id: int | None = None
    ) -> list[Message]:
        """`agent`'s messages not yet acknowledged, oldest first."""
        return await self.hive.broker.inbox(agent, limit, after_id)

    async def recv(self, agent: str, wait: float, owner: int | None) -> Message | None:
        return await self.hive.broker.recv(agent, wait, owner)

    async def ack(self, agent: str, message_id: int, owner: int) -> None:
        await self.hive.broker.ack(agent, message_id, owner)
        self.hive.warm.used(agent)

    async def release(self, agent: str, message_id: int, owner: int) -> None:
        await self.hive.broker.release(agent, message_id, owner)

    def new_owner(self) -> int:
        """A lease owner for one connection's `recv`s."""
        return self.hive.broker.new_owner()

    async def orphan_leases(self, owner: int) -> int:
        """A connection closed: its leases wait for their harness to reclaim them."""
        return await self.hive.broker.orphan_owner(owner)

    async def reclaim(self, agent: str, ids: list[int], owner: int) -> list[int]:
        """The harness reconnected mid-turn: its wake messages are leased to it again."""
        return await self.hive.broker.reclaim(agent, ids, owner)

    # --- approvals -------------------------------------------------------------------

    async def approvals(
        self, status: str | None = None, limit: int = 200, before_id: int | None = None
    ) -> list[Approval]:
        """Approvals newest first, optionally of one status."""
        return await self.hive.approvals.query(status, page=self.page(limit, before_id))

    async def diff(self, approval_id: int) -> ApprovalPatch:
        """What an approval changes (from its merge base with the applied main it was
        proposed on), as unified diff text."""
        approval = await self.hive.approvals.get(approval_id)
        (found,) = await self.approval_diffs([(approval.base, approval.sha)])
        return ApprovalPatch(
            id=approval.id,
            ref=approval.ref,
            sha=approval.sha,
            base=approval.base,
            files=len(found.files),
            additions=found.additions,
            deletions=found.deletions,
            truncated=found.truncated,
            text=unified(found),
        )

    async def pending_approvals(self) -> int:
        return await self.hive.approvals.count_pending()

    async def approvals_screen(
        self, limit: int, offset: int = 0, *, pending: bool
    ) -> tuple[list[Approval], int]:
        """One screen of pending (or of decided) approvals newest first, and how many
        there are in all: what the dashboard pages through."""
        book = self.hive.approvals
        if pending:
            return await book.newest("pending", limit, offset), await book.count("pending")
        rows = await book.newest(None, limit, offset, decided=True)
        return rows, await book.count(decided=True)

    async def approve(self, approval_id: int, approver: str = OPERATOR) -> Approval:
        """Merge the approval's sha into applied main."""
        return await self.hive.approvals.approve(approval_id, approver=approver)

    async def deny(self, approval_id: int, reason: str = "", approver: str = OPERATOR) -> Approval:
        return await self.hive.approvals.deny(approval_id, reason.strip(), approver=approver)

    async def request_spawn(
        self, requester: str, name: str, description: str = "", model: str | None = None
    ) -> Approval:
        return await self.changes.spawn(requester, name, description, model)

    async def request_apply_commit(self, sha: str, note: str = "") -> Approval:
        return await self.changes.apply_commit(sha, note)

    async def rollback(self, to: str | None = None) -> Approval:
        """Propose, as one pending approval of kind `rollback`, putting applied main's
        tree back as it was at `to` (an approval id or a sha of applied main; default:
        the applied commit before the current one)."""
        return await self.rollbacks.propose(to)

    # --- questions -------------------------------------------------------------------

    async def questions(
        self,
        status: str | None = "pending",
        limit: int = 200,
        before_id: int | None = None,
        after_id: int | None = None,
    ) -> list[Question]:
        """Questions of a status oldest first, or all of them newest first."""
        page = self.page(limit, before_id, after_id)
        return await self.hive.questions.query(status, page=page)

    async def questions_screen(
        self, status: str | None, limit: int, offset: int = 0
    ) -> tuple[list[Question], int]:
        """One screen of questions of `status` newest first, and how many there are."""
        book = self.hive.questions
        return await book.newest(status, limit, offset), await book.count(status)

    async def pending_questions(self) -> int:
        return await self.hive.questions.count("pending")

    async def ask(
        self,
        asker: str,
        question: str,
        options: list[str] | None = None,
        multi: bool = False,
        ttl_seconds: int | None = None,
    ) -> Question:
        hive = self.hive
        hive.enforcer.spend_ask(asker, await hive.limits_for(asker))
        return await hive.questions.ask(asker, question, options, multi, ttl_seconds)

    async def answer(self, question_id: int, answer: str | list[str]) -> Question:
        """Answer a question; the asker gets it as `operator_answered`."""
        return await self.hive.questions.answer(question_id, answer)

    async def cancel_question(self, question_id: int) -> Question:
        return await self.hive.questions.cancel(question_id)

    async def cancel_questions(self, agent: str | None) -> CancelledQuestions:
        """Cancel every pending question (of `agent`, None: of all): each asker is told
        once, in one message carrying all of its cancellations."""
        if agent is not None:
            checked_name(agent)
        cancelled = await self.hive.questions.cancel_many(agent)
        return CancelledQuestions(len(cancelled), tuple(q.id for q in cancelled))


def _read_key(path: Path) -> bytes | None:
    try:
        return path.read_bytes().strip()
    except OSError:
        return None
