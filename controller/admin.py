"""The host admin commands served on `host.sock` (see DESIGN.md, "Host admin socket").

Lifecycle commands act on the runtime directly and leave a hold where the operator
stopped an agent, so the reconciler does not start it again until `start` clears it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from controller.broker import MAX_KEY, OPERATOR
from controller.commands import Args, CommandTable, NoArgs
from controller.errors import ConflictError, InvalidError, NotFoundError
from controller.hive import Hive
from controller.paging import MAX_LIMIT, Page
from controller.version import VERSION
from gitstore.spec import InvalidNameError, check_name, port_for, role_for
from reconcilers.runtime import ContainerError

__all__ = [
    "HostSession",
    "agent_row",
    "agent_rows",
    "check_recipient",
    "host_commands",
    "lifecycle",
]

host_commands: CommandTable[HostSession] = CommandTable()


class HostSession:
    """A connection to host.sock: the operator, with every right."""

    busy = False  # nothing the operator holds outlives a request

    def __init__(self, hive: Hive) -> None:
        self.hive = hive

    async def close(self) -> None:
        return None


class NameArgs(Args):
    name: str


class OptionalNameArgs(Args):
    name: str | None = None


class IdArgs(Args):
    id: int


class DenyArgs(Args):
    id: int
    reason: str = Field(default="", max_length=4000)


class ApprovalsArgs(Args):
    status: str | None = None
    limit: int = Field(default=200, ge=1, le=MAX_LIMIT)
    before_id: int | None = Field(default=None, ge=1)


def _page(
    hive: Hive, limit: int, before_id: int | None = None, after_id: int | None = None
) -> Page:
    return Page(limit, before_id, after_id, budget=hive.settings.page_max_bytes)


def _name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidNameError as exc:
        raise InvalidError(str(exc)) from exc


def check_recipient(hive: Hive, to: str) -> str:
    """A name messages can go to: the operator or an applied agent."""
    if to == OPERATOR:
        return to
    _name(to)
    if to not in hive.applied_names:
        raise NotFoundError(f"no agent {to!r} to send to; list_agents shows who exists")
    return to


async def agent_rows(hive: Hive) -> list[dict[str, Any]]:
    desired = await hive.git.applied_agents(hive.applied.sha or None)
    statuses = await hive.records.statuses()
    holds = await hive.records.holds()
    rows = []
    for name in sorted(set(desired) | set(statuses)):
        rows.append(
            await agent_row(hive, name, desired.get(name), statuses.get(name), holds.get(name))
        )
    return rows


async def agent_row(
    hive: Hive,
    name: str,
    desired: Any = None,
    status: Any = None,
    hold: Any = None,
    *,
    fresh: bool = False,
) -> dict[str, Any]:
    if fresh:
        desired = await hive.applied_agent(name)
        status = await hive.records.status(name)
        hold = await hive.records.hold(name)
    observed = await hive.runtime.observe(name)
    spec = desired.spec if desired is not None else None
    state = observed.state.value
    if status is not None and status.reconciling and desired is not None:
        if observed.state.value == "missing":
            state = "creating"
        elif observed.rev != desired.rev:
            state = "updating"
    return {
        "name": name,
        "role": role_for(name),
        "enabled": bool(spec.enabled) if spec else False,
        "description": spec.description if spec else "",
        "model": spec.model if spec else None,
        "state": state,
        "ready": bool(status.ready) if status else False,
        "reason": status.reason if status else "Pending",
        "stalled": bool(status.stalled) if status else False,
        "desired_rev": desired.rev if desired is not None else "",
        "observed_rev": observed.rev or "",
        "harness_version": observed.harness_version or "",
        "port": port_for(name),
        "hold": hold,
        "message": (status.message if status else "") or observed.message,
        "error": desired.error if desired is not None else None,
        # What the harness last reported: idle / thinking / offline, with a reason.
        "turn": hive.turns.get(name, {}).get("state", "unknown"),
        "turn_reason": hive.turns.get(name, {}).get("reason", ""),
    }


async def _known(hive: Hive, name: str) -> None:
    if (
        name not in hive.applied_names
        and (await hive.runtime.observe(name)).state.value == "missing"
    ):
        raise NotFoundError(f"no agent {name!r}; `hive agents` lists them")


@host_commands.command("status", NoArgs)
async def status(s: HostSession, _: NoArgs) -> dict[str, Any]:
    """Version, applied sha and counts."""
    hive = s.hive
    return {
        "version": VERSION,
        "harness_version": hive.settings.harness_version,
        "runtime": hive.runtime.name,
        "sandbox": hive.runtime.sandbox,
        "applied_sha": hive.applied.sha,
        "agents": len(hive.applied.revs),
        "pending_approvals": await hive.approvals.count_pending(),
    }


@host_commands.command("repos", NoArgs)
async def repos(s: HostSession, _: NoArgs) -> dict[str, str]:
    """Paths of the proposed and applied repositories."""
    return {"proposed": str(s.hive.git.proposed_path), "applied": str(s.hive.git.applied_path)}


@host_commands.command("agents", NoArgs)
async def agents(s: HostSession, _: NoArgs) -> list[dict[str, Any]]:
    """Every agent with its desired and observed state."""
    return await agent_rows(s.hive)


@host_commands.command("approvals", ApprovalsArgs)
async def approvals(s: HostSession, a: ApprovalsArgs) -> list[dict[str, Any]]:
    """Approvals, newest first, optionally of one status."""
    return await s.hive.approvals.query(a.status, page=_page(s.hive, a.limit, a.before_id))


@host_commands.command("approve", IdArgs)
async def approve(s: HostSession, a: IdArgs) -> dict[str, Any]:
    """Merge the approval's sha into applied main."""
    return await s.hive.approvals.approve(a.id)


@host_commands.command("deny", DenyArgs)
async def deny(s: HostSession, a: DenyArgs) -> dict[str, Any]:
    """Deny an approval, with a reason."""
    return await s.hive.approvals.deny(a.id, a.reason)


@host_commands.command("reconcile", OptionalNameArgs)
async def reconcile(s: HostSession, a: OptionalNameArgs) -> dict[str, Any]:
    """Queue a reconcile of one agent or all."""
    if a.name is not None:
        await _known(s.hive, _name(a.name))
    return {"queued": await s.hive.reconcile(a.name)}


async def lifecycle(hive: Hive, name: str, verb: str) -> dict[str, Any]:
    """start / stop / restart / kill, shared by host.sock and the manager's tools."""
    name = _name(name)
    await _known(hive, name)
    desired = await hive.applied_agent(name)
    try:
        if verb in ("stop", "kill"):
            await hive.records.set_hold(name, f"{verb} by operator" if verb == "stop" else "killed")
            await hive.runtime.stop(name)
        else:
            if desired is not None and desired.spec is not None and not desired.spec.enabled:
                raise ConflictError(
                    f"{name} is disabled in its agent.toml; enable it by a "
                    "commit to the proposed repo"
                )
            await hive.records.set_hold(name, None)
            hive.agents.forgive(name)
            if verb == "restart":
                await hive.runtime.stop(name)
            if (await hive.runtime.observe(name)).state.value != "missing":
                await hive.runtime.start(name)
    except ContainerError as exc:
        raise ConflictError(f"{verb} {name} failed: {exc}") from exc
    hive.agent_queue.add(name)
    hive.bus.publish(f"agent.{verb}", agent=name)
    return await agent_row(hive, name, fresh=True)


for _verb in ("start", "stop", "restart", "kill"):

    async def _handler(s: HostSession, a: NameArgs, _verb: str = _verb) -> dict[str, Any]:
        return await lifecycle(s.hive, a.name, _verb)

    _handler.__doc__ = f"{_verb.capitalize()} an agent."
    host_commands.command(_verb, NameArgs)(_handler)


class SendArgs(Args):
    to: str
    body: str
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY)


class MessagesArgs(Args):
    agent: str | None = None
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    before_id: int | None = Field(default=None, ge=1)


class QuestionsArgs(Args):
    status: str | None = "pending"
    limit: int = Field(default=200, ge=1, le=MAX_LIMIT)
    before_id: int | None = Field(default=None, ge=1)
    after_id: int | None = Field(default=None, ge=0)


class AnswerArgs(Args):
    id: int
    answer: str | list[str]


@host_commands.command("send", SendArgs)
async def send(s: HostSession, a: SendArgs) -> dict[str, Any]:
    """Send a message to an agent as the operator."""
    to = check_recipient(s.hive, a.to)
    message = await s.hive.broker.send("operator", to, a.body, idempotency_key=a.idempotency_key)
    return {"id": message["id"]}


@host_commands.command("messages", MessagesArgs)
async def messages(s: HostSession, a: MessagesArgs) -> list[dict[str, Any]]:
    """Recent messages, newest first, optionally to or from one agent."""
    if a.agent is not None and a.agent != "operator":
        _name(a.agent)
    return await s.hive.broker.messages(a.agent, a.limit, a.before_id)


@host_commands.command("questions", QuestionsArgs)
async def questions(s: HostSession, a: QuestionsArgs) -> list[dict[str, Any]]:
    """The manager's questions (pending by default)."""
    page = _page(s.hive, a.limit, a.before_id, a.after_id)
    return await s.hive.questions.query(a.status, page=page)


@host_commands.command("answer", AnswerArgs)
async def answer(s: HostSession, a: AnswerArgs) -> dict[str, Any]:
    """Answer a question; the manager gets it as operator_answered."""
    return await s.hive.questions.answer(a.id, a.answer)


@host_commands.command("cancel-question", IdArgs)
async def cancel_question(s: HostSession, a: IdArgs) -> dict[str, Any]:
    """Cancel a question; the manager gets it as operator_answered."""
    return await s.hive.questions.cancel(a.id)


class EventsArgs(Args):
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    type: str = Field(default="", max_length=64)
    before_id: int | None = Field(default=None, ge=1)


@host_commands.command("events", EventsArgs)
async def events(s: HostSession, a: EventsArgs) -> list[dict[str, Any]]:
    """The audit log, newest first: approvals, applied moves, holds, lifecycle, questions."""
    return await s.hive.eventlog.recent(
        type_prefix=a.type, page=_page(s.hive, a.limit, a.before_id)
    )


@host_commands.command("watch", NoArgs, streaming=True)
async def watch(s: HostSession, _: NoArgs) -> AsyncIterator[dict[str, Any]]:
    """Stream every event until the client closes."""

    async def events() -> AsyncIterator[dict[str, Any]]:
        with s.hive.bus.subscribe() as sub:
            yield {"type": "hello", "applied_sha": s.hive.applied.sha}
            async for event in sub:
                yield event.as_json()

    return events()
