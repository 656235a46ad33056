"""The host socket's commands as data: one `Spec` per command, in the order `hive --help`
lists them. The daemon implements each (`controller.admin`); the `hive` client builds its
subcommands, arguments and help from the same specs (`controller.cli_admin`), which is
why this module imports nothing of the daemon.

Field descriptions are the arguments' help. Arguments a command takes by position are
named in `positional`; the rest are `--options`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.commands import Args, NoArgs, Spec
from controller.protocol import MAX_KEY
from controller.protocol import MAX_PAGE as MAX_LIMIT

__all__ = ["GROUP_DEFAULT", "GROUP_HELP", "HOST_SPECS"]

ApprovalStatus = Literal["pending", "approved", "denied", "superseded", "failed"]


class NameArgs(Args):
    name: str = Field(description="the agent's name")


class OptionalNameArgs(Args):
    name: str | None = Field(default=None, description="one agent (default: every agent)")


class ApprovalIdArgs(Args):
    id: int = Field(description="the approval's number (`hive approvals` lists them)")


class DenyArgs(Args):
    id: int = Field(description="the approval's number")
    reason: str = Field(default="", max_length=4000, description="why (kept with the decision)")


_BEFORE = "page back: only rows with a smaller id (the last id of the page before)"
_AFTER = "page on: only rows with a greater id (the last id of the page before)"


class ApprovalsArgs(Args):
    status: ApprovalStatus | None = Field(default=None, description="only approvals of this status")
    limit: int = Field(
        default=200, ge=1, le=MAX_LIMIT, description="at most this many, newest first"
    )
    before_id: int | None = Field(default=None, ge=1, description=_BEFORE)


class SendArgs(Args):
    to: str = Field(description="the agent to send to (or operator)")
    body: str = Field(description="the message")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY,
        description="sent again with the same key, the message is stored once",
    )


class MessagesArgs(Args):
    agent: str | None = Field(default=None, description="only messages to or from this agent")
    limit: int = Field(
        default=100, ge=1, le=MAX_LIMIT, description="at most this many, newest first"
    )
    before_id: int | None = Field(default=None, ge=1, description=_BEFORE)


class QuestionsArgs(Args):
    status: str | None = Field(
        default="pending",
        description="pending, answered, cancelled or expired (default: pending)",
    )
    limit: int = Field(
        default=200,
        ge=1,
        le=MAX_LIMIT,
        description="at most this many (of a status oldest first, else newest first)",
    )
    before_id: int | None = Field(default=None, ge=1, description=_BEFORE)
    after_id: int | None = Field(default=None, ge=0, description=_AFTER)


class QuestionIdArgs(Args):
    id: int = Field(description="the question's number (`hive questions` lists them)")


class AnswerArgs(Args):
    id: int = Field(description="the question's number")
    answer: str | list[str] = Field(
        description="the answer: free text, one of its options, or (checkboxes) several"
    )


class LogsArgs(Args):
    name: str = Field(description="the agent's name")
    lines: int = Field(
        default=100, ge=1, le=5000, description="at most this many of the last lines"
    )


class EventsArgs(Args):
    limit: int = Field(
        default=100, ge=1, le=MAX_LIMIT, description="at most this many, newest first"
    )
    type: str = Field(
        default="",
        max_length=64,
        description="only types starting with this (approval, agent.kill) or named so "
        "(hold, kill, alarm, sent)",
    )
    before_id: int | None = Field(default=None, ge=1, description=_BEFORE)


class DestroyArgs(Args):
    name: str = Field(description="the agent's name (no longer in applied main)")
    purge: bool = Field(
        default=False,
        description="also delete its notes, history and credentials (its claim); "
        "this cannot be undone",
    )


class TokenCreateArgs(Args):
    name: str | None = Field(
        default=None, max_length=63, description="a name to know it by (default token-N)"
    )


class TokenNameArgs(Args):
    name: str = Field(max_length=63, description="the token's name (`hive token list`)")


class UsageArgs(Args):
    agent: str | None = Field(default=None, description="only this agent")
    since: str | None = Field(
        default=None,
        max_length=32,
        description="only days from this one on: a UTC day (2026-12-01) or a number of "
        "days back (7d)",
    )
    limit: int = Field(
        default=1000, ge=1, le=MAX_LIMIT, description="at most this many rows, newest day first"
    )


class InboxArgs(Args):
    name: str = Field(description="the agent whose inbox to list")
    limit: int = Field(
        default=100, ge=1, le=MAX_LIMIT, description="at most this many, oldest first"
    )
    after_id: int | None = Field(default=None, ge=0, description=_AFTER)


class PurgeArgs(Args):
    name: str = Field(description="the agent whose inbox to purge")
    sender: str | None = Field(
        default=None,
        max_length=64,
        description="only messages from this sender (an agent, or operator)",
    )


class CancelQuestionsArgs(Args):
    agent: str | None = Field(
        default=None, description="only this agent's questions (--all: every pending one)"
    )
    all: bool = Field(default=False, description="every pending question")


class RollbackArgs(Args):
    to: str | None = Field(
        default=None,
        max_length=64,
        description="an approval id or a sha of applied main (default: the applied commit "
        "before the current one)",
    )


_LIFECYCLE = {
    "start": "start an agent and clear its hold",
    "stop": "stop an agent and hold it stopped",
    "restart": "restart an agent (clears its hold)",
    "kill": "kill an agent and hold it until `hive start`",
}

# Commands of two words (`hive applied reset`) are grouped under their first word.
GROUP_HELP = {
    "applied": "resolve the gate's alarm (applied main moved outside hive-c0re): reset | adopt",
    "token": "tokens for git over HTTP on the dashboard (/git/proposed.git): "
    "create | list | revoke",
    "notify": "notifications to the [[notify]] targets of hive.toml: test",
    "inbox": "an agent's inbox: hive inbox NAME lists it, hive inbox purge NAME empties it",
    "questions": "questions for the operator (the manager's, and agents' tool permissions): "
    "hive questions lists them, hive questions cancel cancels many at once",
}
# A group's subcommand taken when the next word is none of its own (`hive inbox alice`
# is `hive inbox show alice`, `hive questions --all` is `hive questions list --all`).
GROUP_DEFAULT = {"inbox": "show", "questions": "list"}

HOST_SPECS: tuple[Spec, ...] = (
    Spec("status", NoArgs, "daemon version, applied sha, counts, the gate's alarm", view="status"),
    Spec("repos", NoArgs, "paths of the proposed and applied repos"),
    Spec(
        "agents",
        NoArgs,
        "agents with desired and observed state",
        view="table",
        columns=(
            "name",
            "role",
            "state",
            "turn",
            "ready",
            "reason",
            "desired_rev",
            "observed_rev",
            "hold",
            "spend_today_usd",
            "spend_total_usd",
            "message",
        ),
    ),
    Spec(
        "usage",
        UsageArgs,
        "spend and tokens per agent and UTC day, newest day first",
        view="table",
        columns=(
            "agent",
            "day",
            "turns",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_creation_tokens",
            "tool_calls",
            "cost_usd",
        ),
        empty="no turns recorded",
    ),
    Spec(
        "approvals",
        ApprovalsArgs,
        "list approvals, newest first (pending ones unless --status or --all)",
        cli_defaults={"status": "pending"},
        page_on="before_id",
        view="table",
        columns=("id", "kind", "status", "ref", "sha", "plan", "errors", "summary"),
        empty="no approvals",
    ),
    Spec(
        "approve",
        ApprovalIdArgs,
        "approve-by-merge an approval",
        positional=("id",),
        view="decision",
    ),
    Spec(
        "deny",
        DenyArgs,
        "deny an approval with a reason",
        positional=("id", "reason"),
        view="decision",
    ),
    Spec(
        "diff",
        ApprovalIdArgs,
        "print what an approval changes (coloured on a terminal)",
        positional=("id",),
        view="diff",
    ),
    Spec(
        "applied-reset",
        NoArgs,
        "resolve an alarm: move applied main back to the sha hive-c0re recorded",
        words=("applied", "reset"),
        view="template",
        template="applied main moved back from {found_sha:.12} to the recorded {recorded_sha:.12}",
    ),
    Spec(
        "applied-adopt",
        NoArgs,
        "resolve an alarm: propose the found sha as an approval (applied main stays at the "
        "recorded sha until it is approved)",
        words=("applied", "adopt"),
        view="template",
        template="approval #{id} proposes {sha:.12} ({ref}); applied main is back at the "
        "recorded sha until it is approved",
    ),
    Spec(
        "reconcile",
        OptionalNameArgs,
        "queue a reconcile of one agent or all",
        positional=("name",),
    ),
    *(
        Spec(
            verb,
            NameArgs,
            text,
            positional=("name",),
            view="table",
            columns=("name", "state", "ready", "hold", "message"),
        )
        for verb, text in _LIFECYCLE.items()
    ),
    Spec(
        "destroy",
        DestroyArgs,
        "remove what is left of an agent removed from applied main; its notes and "
        "credentials stay unless --purge",
        positional=("name",),
        view="template",
        template="{name}: {message}",
    ),
    Spec(
        "logs",
        LogsArgs,
        "print an agent's log (its harness's output); -f follows it",
        positional=("name",),
        view="lines",
        follow=True,
    ),
    Spec(
        "cancel",
        NameArgs,
        "interrupt an agent's running turn (its message is acknowledged)",
        positional=("name",),
        view="template",
        template="{agent}: turn cancelled: {cancelled}",
    ),
    Spec(
        "rollback",
        RollbackArgs,
        "propose putting applied main's tree back as it was at REV: one pending approval "
        "of kind rollback, approved like any other",
        positional=("to",),
        view="template",
        template="approval #{id} ({kind}, {ref}) proposes {sha:.12}: {note}; "
        "`hive approve {id}` applies it",
    ),
    Spec("send", SendArgs, "send a message to an agent as the operator", positional=("to", "body")),
    Spec(
        "inbox",
        InboxArgs,
        "an agent's messages not yet acknowledged, oldest first",
        words=("inbox", "show"),
        positional=("name",),
        view="table",
        columns=("id", "sender", "kind", "created_at", "delivered_at", "body"),
        empty="the inbox is empty",
    ),
    Spec(
        "inbox-purge",
        PurgeArgs,
        "take an agent's undelivered messages out of its inbox (kept in hive messages, "
        "marked purged, and listed in the audit log)",
        words=("inbox", "purge"),
        positional=("name",),
        options={"sender": "from"},
        view="template",
        template="{purged} message(s) purged from {agent}'s inbox",
    ),
    Spec(
        "messages",
        MessagesArgs,
        "recent messages, newest first",
        cli_defaults={"limit": 50},
        view="table",
        columns=("id", "sender", "recipient", "created_at", "delivered_at", "acked_at", "body"),
        empty="no messages",
    ),
    Spec(
        "questions",
        QuestionsArgs,
        "questions for the operator: the manager's, and agents asking for a tool "
        "(pending ones by default, oldest first; every one of them unless --limit)",
        words=("questions", "list"),
        page_on="after_id",
        view="table",
        columns=("id", "question", "options", "expires_at"),
        empty="no questions",
    ),
    Spec(
        "questions-cancel",
        CancelQuestionsArgs,
        "cancel the pending questions of one agent (--agent A) or all (--all); each asker "
        "is told once, in one message",
        words=("questions", "cancel"),
        view="template",
        template="{cancelled} question(s) cancelled",
    ),
    Spec(
        "answer",
        AnswerArgs,
        "answer a question (the manager gets it as operator_answered; a permission "
        "question's agent gets allow once / deny in its turn); several words choose "
        "several options of a checkbox question",
        positional=("id", "answer"),
    ),
    Spec(
        "cancel-question",
        QuestionIdArgs,
        "cancel a question (its asker is told; a permission question is denied)",
        positional=("id",),
    ),
    Spec(
        "events",
        EventsArgs,
        "the audit log: decisions and lifecycle, newest first",
        cli_defaults={"limit": 50},
        view="events",
        empty="no events",
    ),
    Spec(
        "token-create",
        TokenCreateArgs,
        "create a token for git over HTTP (the password; any user name); it is shown only now",
        words=("token", "create"),
        view="template",
        template="{token}\n(token {name}: the password for git over HTTP with any user "
        "name; it is shown only now)",
    ),
    Spec(
        "token-list",
        NoArgs,
        "tokens for git over HTTP (names and use, never the tokens)",
        words=("token", "list"),
        view="table",
        columns=("name", "created_at", "last_used_at"),
        empty="no tokens",
    ),
    Spec(
        "token-revoke",
        TokenNameArgs,
        "revoke a token for git over HTTP (refused from the next request on)",
        positional=("name",),
        words=("token", "revoke"),
        view="template",
        template="token {name} revoked",
    ),
    Spec("watch", NoArgs, "stream every event until interrupted", streaming=True, view="events"),
    Spec(
        "notify-test",
        NoArgs,
        "send a test notification to every [[notify]] target of hive.toml, and say how each went",
        words=("notify", "test"),
        view="table",
        columns=("target", "kind", "url_env", "result", "attempts", "error"),
        empty="no notification targets: add [[notify]] tables to hive.toml (see the README)",
    ),
)
