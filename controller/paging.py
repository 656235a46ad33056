"""Pages of list answers: bounded in rows and in bytes, with a cursor to page on.

Every list the sockets answer (`messages`, `inbox`, `events`, `approvals`, `questions`)
takes at most `MAX_LIMIT` rows and stops before its rows pass `Page.budget` bytes of
JSON, so no request can make the daemon build an answer bigger than a client can read
(`protocol.MAX_LINE`): `messages limit=10000` once built 981 MB (4.3 GB RSS). Rows are
taken from the sqlite cursor one by one, so memory is bounded too. A page holds at
least one row (one row is bounded by the inputs' own limits), and may hold fewer than
`limit` rows: a client pages on with `before_id` (lists newest first) or `after_id`
(oldest first) set to the last row's id, until a page is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from controller.protocol import MAX_PAGE, encoded_size

__all__ = ["DEFAULT_BUDGET", "MAX_LIMIT", "Page"]

T = TypeVar("T")

MAX_LIMIT = MAX_PAGE
DEFAULT_BUDGET = 512 * 1024


@dataclass(frozen=True)
class Page:
    """Which rows a list answer may hold: `limit` rows with ids in (after_id, before_id),
    within `budget` bytes."""

    limit: int = 100
    before_id: int | None = None
    after_id: int | None = None
    budget: int = DEFAULT_BUDGET

    def where(self, column: str = "id") -> tuple[str, tuple[int, ...]]:
        """The SQL condition (`1` when unbounded) and its parameters."""
        parts, params = [], []
        if self.before_id is not None:
            parts.append(f"{column} < ?")
            params.append(self.before_id)
        if self.after_id is not None:
            parts.append(f"{column} > ?")
            params.append(self.after_id)
        return (" AND ".join(parts) or "1"), tuple(params)

    def take(self, rows: Iterable[T], size: Callable[[T], int] = encoded_size) -> list[T]:
        """The first rows that fit: at most `limit`, and within `budget` bytes."""
        taken: list[T] = []
        used = 0
        for row in rows:
            used += size(row) + 1
            if taken and used > self.budget:
                break
            taken.append(row)
            if len(taken) >= min(self.limit, MAX_LIMIT):
                break
        return taken
