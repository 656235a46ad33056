"""The hive's values as they leave sqlite: frozen, typed, and shaped like the contract.

Each value's fields are the keys of its JSON in DESIGN.md's tables, in the same order,
so the adapters serialise them with one generic encoder (`pydantic_core`'s
`to_jsonable_python`: tuples become lists, enums their values) and the wire format does
not change. The modules that own a table map its rows to these values; everything above
(operations, sockets, pages) passes the values on and never indexes a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.gate import Alarm
from gitstore.plan import PlanStep

__all__ = [
    "AgentRow",
    "AgentSpend",
    "AppliedReset",
    "Approval",
    "Asked",
    "CancelledQuestions",
    "Destroyed",
    "Identity",
    "MainSummary",
    "Message",
    "PlanStep",
    "Purged",
    "Question",
    "Queued",
    "Repos",
    "Sent",
    "Status",
    "TurnCancel",
    "UsageRow",
]


@dataclass(frozen=True)
class Approval:
    """A proposed change awaiting (or past) the operator's decision, bound to one sha."""

    id: int
    kind: str
    ref: str
    sha: str
    base: str
    summary: str
    author: str
    note: str
    status: str
    plan: tuple[PlanStep, ...]
    errors: tuple[str, ...]
    reason: str
    approver: str
    applied_sha: str
    created_at: str
    decided_at: str | None
    # Kept true by re-planning whenever applied main moves (the card shows a conflict
    # before anyone clicks); `merging` while an approve holds its claim.
    mergeable: bool
    merging: bool
    merge_base: str
    touched: tuple[str, ...]
    planned_at: str


@dataclass(frozen=True)
class Message:
    """A message between agents (or the operator); delivered once leased, acked when done."""

    id: int
    sender: str
    recipient: str
    kind: str
    body: str
    created_at: str
    delivered_at: str | None
    acked_at: str | None


@dataclass(frozen=True)
class Question:
    """The manager's question to the operator: free text, one option, or several; or a
    harness's `permission` question (may the agent use this tool once?)."""

    id: int
    asker: str
    question: str
    options: tuple[str, ...]
    multi: bool
    status: str
    answer: str | tuple[str, ...] | None
    created_at: str
    expires_at: str | None
    decided_at: str | None
    kind: str = "question"


@dataclass(frozen=True)
class Permission:
    """How the operator decided a permission question (`ask_permission`)."""

    id: int
    status: str
    allow: bool


@dataclass(frozen=True)
class AgentRow:
    """An agent as `hive agents` shows it: desired (applied tree), observed (runtime),
    the last reconcile's conditions, the operator's hold and the harness's turn."""

    name: str
    role: str
    enabled: bool
    description: str
    model: str | None
    state: str  # running, stopped, missing, crashed, creating, updating
    ready: bool
    reason: str
    stalled: bool
    desired_rev: str
    observed_rev: str
    harness_version: str
    hold: str | None
    message: str
    error: str | None
    turn: str  # idle, thinking, offline, unknown
    turn_reason: str
    # Accounting (controller.usage): USD as claude reports it, tokens with cache tokens.
    spend_today_usd: float = 0.0
    spend_total_usd: float = 0.0
    tokens_today: int = 0
    tokens_total: int = 0


@dataclass(frozen=True)
class AgentSpend:
    """One agent's (or the hive's) spend: today (UTC) and in total."""

    today_usd: float
    total_usd: float
    today_tokens: int
    total_tokens: int
    today_turns: int
    total_turns: int


@dataclass(frozen=True)
class UsageRow:
    """`hive usage`: one agent's turns of one UTC day, summed."""

    agent: str
    day: str
    turns: int
    duration_ms: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float
    tool_calls: int


@dataclass(frozen=True)
class Purged:
    """`hive inbox purge`: the messages taken out of an inbox (kept, marked purged)."""

    agent: str
    sender: str | None
    purged: int
    ids: tuple[int, ...]


@dataclass(frozen=True)
class CancelledQuestions:
    """`hive questions cancel`: the questions cancelled, told to their askers at once."""

    cancelled: int
    ids: tuple[int, ...]


@dataclass(frozen=True)
class TurnCancel:
    """`hive cancel`: whether a turn was running (and so was interrupted)."""

    agent: str
    cancelled: bool


@dataclass(frozen=True)
class Status:
    """`hive status`: versions, where applied main is, counts."""

    version: str
    harness_version: str
    runtime: str
    sandbox: str
    applied_sha: str
    agents: int
    pending_approvals: int
    pending_questions: int
    # null, or applied main moved outside hive-c0re (never reconciled until resolved).
    alarm: Alarm | None
    proposed_main: MainSummary | None


@dataclass(frozen=True)
class MainSummary:
    """Where proposed `main` is: `following` / `ahead` of applied main, or `diverged`."""

    sha: str
    state: str


@dataclass(frozen=True)
class AppliedReset:
    """`hive applied reset`: applied main is back at the recorded sha."""

    recorded_sha: str
    found_sha: str


@dataclass(frozen=True)
class Repos:
    proposed: str
    applied: str


@dataclass(frozen=True)
class Queued:
    """The agents a `reconcile` queued."""

    queued: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    """A message stored for delivery."""

    id: int


@dataclass(frozen=True)
class Asked:
    """A question queued on the dashboard."""

    id: int


@dataclass(frozen=True)
class Identity:
    """What an agent's harness asks at every turn: who it is and how to run."""

    name: str
    role: str
    model: str | None
    prompt: str
    allowed_tools: tuple[str, ...]
    description: str
    # hive.toml / agent.toml: the harness interrupts a turn that makes more tool calls.
    max_tool_calls_per_turn: int = 200


@dataclass(frozen=True)
class Destroyed:
    """What `destroy` removed of an agent no longer in applied main."""

    name: str
    purged: bool
    message: str


@dataclass(frozen=True)
class ApprovalPatch:
    """What an approval changes, as `hive diff N` prints it."""

    id: int
    ref: str
    sha: str
    base: str
    files: int
    additions: int
    deletions: int
    truncated: bool
    text: str
