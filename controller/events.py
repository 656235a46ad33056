"""Every type of event on the hive's bus, in one enum.

Publishers name their event with a member, the audit log picks what it keeps from it
and filters by it, and the dashboard's script gets the list rendered into the page, so
an event type exists in exactly one place. The values are the contract's strings
(`hive watch`, `hive events --type`, SSE event names): `family.what`.
"""

from __future__ import annotations

import enum

__all__ = ["AUDITED", "EventType"]


class EventType(enum.StrEnum):
    HELLO = "hello"  # the first event of every stream: where applied main is
    APPROVAL_CREATED = "approval.created"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_DENIED = "approval.denied"
    APPROVAL_SUPERSEDED = "approval.superseded"
    APPROVAL_FAILED = "approval.failed"
    APPROVAL_NOTED = "approval.noted"
    APPROVAL_REPLANNED = "approval.replanned"  # applied main moved: the plan was redone
    APPROVAL_ROLLBACK = "approval.rollback"  # a rollback was proposed (by hand or automatic)
    APPLIED_MOVED = "applied.moved"
    APPLIED_ALARM = "applied.alarm"  # applied main moved outside hive-c0re (or cleared)
    APPLIED_RESET = "applied.reset"
    APPLIED_ADOPTED = "applied.adopted"
    PROPOSED_FOLLOWED = "proposed.followed"  # proposed main fast-forwarded to applied
    PROPOSED_DIVERGED = "proposed.diverged"
    AGENT_STATUS = "agent.status"
    AGENT_HOLD = "agent.hold"
    AGENT_TURN = "agent.turn"
    AGENT_EXITED = "agent.exited"
    AGENT_REMOVED = "agent.removed"
    AGENT_SOCKET_FAILED = "agent.socket_failed"
    AGENT_START = "agent.start"
    AGENT_STOP = "agent.stop"
    AGENT_RESTART = "agent.restart"
    AGENT_KILL = "agent.kill"
    AGENT_LIMITED = "agent.limited"  # a limit of hive.toml held it or interrupted a turn
    AGENT_RATE_LIMITED = "agent.rate_limited"  # a send / ask_operator refused by a rate
    AGENT_USAGE = "agent.usage"  # a finished turn was recorded (accounting)
    AGENT_CANCEL = "agent.cancel"  # the operator interrupted the running turn
    RECONCILE_RUN = "reconcile.run"
    MESSAGE_SENT = "message.sent"
    MESSAGE_ACKED = "message.acked"
    MESSAGE_PURGED = "message.purged"  # the operator purged (part of) an inbox
    QUESTION_ASKED = "question.asked"
    QUESTION_ANSWERED = "question.answered"
    QUESTION_CANCELLED = "question.cancelled"
    QUESTION_EXPIRED = "question.expired"
    NOTIFY_SENT = "notify.sent"  # a notification reached its provider
    NOTIFY_FAILED = "notify.failed"  # ... did not, after its retries (or was dropped)
    NOTIFY_INVALID = "notify.invalid"  # hive.toml's [[notify]] tables cannot be read

    @property
    def family(self) -> str:
        """What the event is about: `approval`, `agent`, `message`, ..."""
        return self.value.split(".", 1)[0]

    @classmethod
    def matching(cls, prefix: str, among: frozenset[EventType] | None = None) -> list[EventType]:
        """The types whose value starts with `prefix` (`approval`, `agent.k`, an exact
        type), in declaration order; all of them for an empty prefix. When none does,
        those whose second word does: the names people type (`hold`, `kill`, `alarm`)."""
        pool = list(cls) if among is None else [t for t in cls if t in among]
        found = [t for t in pool if t.value.startswith(prefix)]
        if found or "." in prefix:
            return found
        return [t for t in pool if t.value.partition(".")[2].startswith(prefix)]


# What changes what runs or what the operator decided, kept in the audit log. Messages
# and turn states are not copied there: they have their own tables or are ephemeral.
AUDITED = frozenset(
    {
        EventType.APPROVAL_CREATED,
        EventType.APPROVAL_APPROVED,
        EventType.APPROVAL_DENIED,
        EventType.APPROVAL_SUPERSEDED,
        EventType.APPROVAL_FAILED,
        EventType.APPROVAL_NOTED,
        EventType.APPLIED_MOVED,
        EventType.APPLIED_ALARM,
        EventType.APPLIED_RESET,
        EventType.APPLIED_ADOPTED,
        EventType.PROPOSED_FOLLOWED,
        EventType.PROPOSED_DIVERGED,
        EventType.AGENT_HOLD,
        EventType.AGENT_START,
        EventType.AGENT_STOP,
        EventType.AGENT_RESTART,
        EventType.AGENT_KILL,
        EventType.AGENT_LIMITED,
        EventType.AGENT_RATE_LIMITED,
        EventType.AGENT_CANCEL,
        EventType.APPROVAL_ROLLBACK,
        EventType.MESSAGE_PURGED,
        EventType.QUESTION_ASKED,
        EventType.QUESTION_ANSWERED,
        EventType.QUESTION_CANCELLED,
        EventType.QUESTION_EXPIRED,
        EventType.NOTIFY_SENT,
        EventType.NOTIFY_FAILED,
        EventType.NOTIFY_INVALID,
    }
)
