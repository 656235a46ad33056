"""The hive's values as they leave sqlite: frozen, typed, and shaped like the contract.

Each value's fields are the keys of its JSON in DESIGN.md's tables, in the same order,
so the adapters serialise them with one generic encoder (`pydantic_core`'s
`to_jsonable_python`: tuples become lists, enums their values) and the wire format does
not change. The modules that own a table map its rows to these values; everything above
(operations, sockets, pages) passes the values on and never indexes a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitstore.plan import PlanStep

__all__ = ["Approval", "Message", "PlanStep", "Question"]


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
    """The manager's question to the operator: free text, one option, or several."""

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
