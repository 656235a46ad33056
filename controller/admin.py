"""The host admin socket (`host.sock`, see DESIGN.md "Host admin socket"): the operator,
with every right. Each command of `controller.host_spec` is implemented here as a call on
`Operations`; its typed result is encoded by the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from controller.commands import CommandTable, NoArgs
from controller.events import EventType
from controller.fanout import Event
from controller.host_spec import (
    HOST_SPECS,
    AnswerArgs,
    ApprovalIdArgs,
    ApprovalsArgs,
    DenyArgs,
    EventsArgs,
    LogsArgs,
    MessagesArgs,
    NameArgs,
    OptionalNameArgs,
    QuestionIdArgs,
    QuestionsArgs,
    SendArgs,
)
from controller.notify import Delivery
from controller.operations import LIFECYCLE, JSONObject, Operations, Verb
from controller.values import (
    AgentRow,
    AppliedReset,
    Approval,
    ApprovalPatch,
    Message,
    Question,
    Queued,
    Repos,
    Sent,
    Status,
)

__all__ = ["HostSession", "host_commands"]

host_commands: CommandTable[HostSession] = CommandTable(HOST_SPECS)


class HostSession:
    """A connection to host.sock."""

    busy = False  # nothing the operator holds outlives a request

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    async def close(self) -> None:
        return None


@host_commands.implement("status")
async def status(s: HostSession, _: NoArgs) -> Status:
    return await s.ops.status()


@host_commands.implement("repos")
async def repos(s: HostSession, _: NoArgs) -> Repos:
    return s.ops.repos()


@host_commands.implement("agents")
async def agents(s: HostSession, _: NoArgs) -> list[AgentRow]:
    return await s.ops.agents()


@host_commands.implement("approvals")
async def approvals(s: HostSession, a: ApprovalsArgs) -> list[Approval]:
    return await s.ops.approvals(a.status, a.limit, a.before_id)


@host_commands.implement("approve")
async def approve(s: HostSession, a: ApprovalIdArgs) -> Approval:
    return await s.ops.approve(a.id)


@host_commands.implement("deny")
async def deny(s: HostSession, a: DenyArgs) -> Approval:
    return await s.ops.deny(a.id, a.reason)


@host_commands.implement("diff")
async def diff(s: HostSession, a: ApprovalIdArgs) -> ApprovalPatch:
    return await s.ops.diff(a.id)


@host_commands.implement("logs")
async def logs(s: HostSession, a: LogsArgs) -> list[str]:
    return await s.ops.logs(a.name, a.lines)


@host_commands.implement("applied-reset")
async def applied_reset(s: HostSession, _: NoArgs) -> AppliedReset:
    return await s.ops.applied_reset()


@host_commands.implement("applied-adopt")
async def applied_adopt(s: HostSession, _: NoArgs) -> Approval:
    return await s.ops.applied_adopt()


@host_commands.implement("reconcile")
async def reconcile(s: HostSession, a: OptionalNameArgs) -> Queued:
    return await s.ops.reconcile(a.name)


def _lifecycle(verb: Verb) -> None:
    async def handler(s: HostSession, a: NameArgs) -> AgentRow:
        return await s.ops.lifecycle(a.name, verb)

    host_commands.implement(verb)(handler)


for _verb in LIFECYCLE:
    _lifecycle(_verb)


@host_commands.implement("send")
async def send(s: HostSession, a: SendArgs) -> Sent:
    return await s.ops.send("operator", a.to, a.body, a.idempotency_key)


@host_commands.implement("messages")
async def messages(s: HostSession, a: MessagesArgs) -> list[Message]:
    return await s.ops.messages(a.agent, a.limit, a.before_id)


@host_commands.implement("questions")
async def questions(s: HostSession, a: QuestionsArgs) -> list[Question]:
    return await s.ops.questions(a.status, a.limit, a.before_id, a.after_id)


@host_commands.implement("answer")
async def answer(s: HostSession, a: AnswerArgs) -> Question:
    return await s.ops.answer(a.id, a.answer)


@host_commands.implement("cancel-question")
async def cancel_question(s: HostSession, a: QuestionIdArgs) -> Question:
    return await s.ops.cancel_question(a.id)


@host_commands.implement("events")
async def events(s: HostSession, a: EventsArgs) -> list[JSONObject]:
    return await s.ops.events(a.limit, a.type, a.before_id)


@host_commands.implement("notify-test")
async def notify_test(s: HostSession, _: NoArgs) -> list[Delivery]:
    return await s.ops.notify_test()


@host_commands.implement("watch")
async def watch(s: HostSession, _: NoArgs) -> AsyncIterator[JSONObject]:
    async def stream() -> AsyncIterator[JSONObject]:
        with s.ops.subscribe() as sub:
            yield {"type": EventType.HELLO, "applied_sha": s.ops.applied_sha()}
            event: Event
            async for event in sub:
                yield event.as_json()

    return stream()
