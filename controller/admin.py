"""The host admin socket (`host.sock`, see DESIGN.md "Host admin socket"): the operator,
with every right. Each command of `controller.host_spec` is implemented here as a call on
`Operations`; its typed result is encoded by the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

from controller.commands import CommandTable, NoArgs
from controller.errors import InvalidError
from controller.events import EventType
from controller.fanout import Event
from controller.host_spec import (
    HOST_SPECS,
    AnswerArgs,
    ApprovalIdArgs,
    ApprovalsArgs,
    CancelQuestionsArgs,
    DenyArgs,
    DestroyArgs,
    EventsArgs,
    InboxArgs,
    LogsArgs,
    MessagesArgs,
    NameArgs,
    OptionalNameArgs,
    PurgeArgs,
    QuestionIdArgs,
    QuestionsArgs,
    RollbackArgs,
    SendArgs,
    TokenCreateArgs,
    TokenNameArgs,
    UsageArgs,
)
from controller.notify import Delivery
from controller.operations import LIFECYCLE, JSONObject, Operations, Verb
from controller.tokens import NewToken, TokenInfo
from controller.values import (
    AgentRow,
    AppliedReset,
    Approval,
    ApprovalPatch,
    CancelledQuestions,
    Destroyed,
    Message,
    Purged,
    Question,
    Queued,
    Repos,
    Sent,
    Status,
    TurnCancel,
    UsageRow,
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


@host_commands.implement("destroy")
async def destroy(s: HostSession, a: DestroyArgs) -> Destroyed:
    return await s.ops.destroy(a.name, purge=a.purge)


@host_commands.implement("usage")
async def usage(s: HostSession, a: UsageArgs) -> list[UsageRow]:
    return await s.ops.usage(a.agent, since_day(a.since, s.ops.hive.usage.today()), a.limit)


def since_day(since: str | None, today: str) -> str | None:
    """`--since` as a UTC day: a day as given (YYYY-MM-DD) or `Nd`, N days before today."""
    if since is None:
        return None
    text = since.strip()
    try:
        if text.endswith("d") and text[:-1].isdigit():
            days = int(text[:-1])
            if days > 100_000:
                raise ValueError(text)
            return (date.fromisoformat(today) - timedelta(days=days)).isoformat()
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise InvalidError(
            f"since: {since[:40]!r} is neither a day (2026-12-01) nor a number of days (7d)"
        ) from exc


@host_commands.implement("cancel")
async def cancel(s: HostSession, a: NameArgs) -> TurnCancel:
    return await s.ops.cancel_turn(a.name)


@host_commands.implement("rollback")
async def rollback(s: HostSession, a: RollbackArgs) -> Approval:
    return await s.ops.rollback(a.to)


@host_commands.implement("inbox")
async def inbox(s: HostSession, a: InboxArgs) -> list[Message]:
    return await s.ops.inbox(await s.ops.known(a.name), a.limit, a.after_id)


@host_commands.implement("inbox-purge")
async def inbox_purge(s: HostSession, a: PurgeArgs) -> Purged:
    return await s.ops.inbox_purge(a.name, a.sender)


@host_commands.implement("questions-cancel")
async def questions_cancel(s: HostSession, a: CancelQuestionsArgs) -> CancelledQuestions:
    if (a.agent is None) == (not a.all):
        raise InvalidError("name whose questions to cancel: --agent NAME, or --all for every one")
    return await s.ops.cancel_questions(a.agent)


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


@host_commands.implement("token-create")
async def token_create(s: HostSession, a: TokenCreateArgs) -> NewToken:
    return await s.ops.create_token(a.name)


@host_commands.implement("token-list")
async def token_list(s: HostSession, _: NoArgs) -> list[TokenInfo]:
    return s.ops.tokens()


@host_commands.implement("token-revoke")
async def token_revoke(s: HostSession, a: TokenNameArgs) -> TokenInfo:
    return await s.ops.revoke_token(a.name)


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
