"""Accounting: every finished turn of every agent, in the store.

A harness reports each turn it finished in its `turn_state` report (`last_turn`: its
history's turn id and start, status, duration, tokens including cache tokens, the cost
in USD as claude reports it, the model, the tool calls). The same turn is reported
again with every later state change until the next one finishes, so a turn is stored
once, keyed by `(agent, started_at, harness turn id)`. The day a turn counts for is the
UTC day hive-c0re recorded it, from its clock (so a test moves to the next day by
moving a fake clock). Sums are one indexed query each; nothing here is on the send path.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import InvalidError
from controller.store import Store
from controller.values import AgentSpend, UsageRow
from reconcilers.clock import Clock, iso

__all__ = ["FinishedTurn", "Usage"]

_BIG = 2**62


class FinishedTurn(BaseModel):
    """A turn as a harness reports it in `last_turn` (unknown keys are ignored: an older
    or newer harness reports fewer or more)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int = Field(ge=0, le=_BIG)
    started_at: str = Field(min_length=1, max_length=64)
    status: str = Field(max_length=32)
    duration_ms: int = Field(default=0, ge=0, le=_BIG)
    input_tokens: int | None = Field(default=None, ge=0, le=_BIG)
    output_tokens: int | None = Field(default=None, ge=0, le=_BIG)
    cache_read_tokens: int | None = Field(default=None, ge=0, le=_BIG)
    cache_creation_tokens: int | None = Field(default=None, ge=0, le=_BIG)
    cost_usd: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)
    model: str | None = Field(default=None, max_length=200)
    tool_calls: int = Field(default=0, ge=0, le=_BIG)
    interrupted: str | None = Field(default=None, max_length=64)

    @classmethod
    def of(cls, report: dict[str, object]) -> FinishedTurn | None:
        """The finished turn in a report, None when it names none (an older harness)."""
        if "id" not in report or "started_at" not in report:
            return None
        try:
            return cls.model_validate(report)
        except ValidationError as exc:
            raise InvalidError(f"last_turn: {exc.errors()[0]['msg']}") from exc


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _spend(row: sqlite3.Row | tuple[object, ...]) -> tuple[float, int, int]:
    cost, tokens, turns = tuple(row)
    return float(cost or 0.0), int(tokens or 0), int(turns or 0)


_TOKENS = "input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens"


class Usage:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def today(self) -> str:
        return _day(self.clock.utcnow())

    async def record(self, agent: str, turn: FinishedTurn) -> bool:
        """Store a finished turn; False when it was stored before."""
        now = self.clock.utcnow()
        row = (
            agent,
            turn.id,
            turn.started_at,
            iso(now),
            _day(now),
            turn.status,
            turn.duration_ms,
            turn.input_tokens or 0,
            turn.output_tokens or 0,
            turn.cache_read_tokens or 0,
            turn.cache_creation_tokens or 0,
            turn.cost_usd or 0.0,
            turn.model or "",
            turn.tool_calls,
        )

        def q(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO turns(agent, harness_turn, started_at, ended_at, day,"
                " status, duration_ms, input_tokens, output_tokens, cache_read_tokens,"
                " cache_creation_tokens, cost_usd, model, tool_calls)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            return cur.rowcount == 1

        return await self.store.call(q)

    async def spent_today(self, agent: str | None = None) -> float:
        """USD spent today (UTC) by one agent, or by the hive."""
        day = self.today()

        def q(db: sqlite3.Connection) -> float:
            if agent is None:
                found = db.execute("SELECT total(cost_usd) FROM turns WHERE day=?", (day,))
            else:
                found = db.execute(
                    "SELECT total(cost_usd) FROM turns WHERE day=? AND agent=?", (day, agent)
                )
            return float(found.fetchone()[0])

        return await self.store.call(q)

    async def turns_within(self, agent: str, seconds: float) -> int:
        """How many turns of `agent` ended within the last `seconds`."""
        since = iso(self.clock.utcnow() - timedelta(seconds=seconds))

        def q(db: sqlite3.Connection) -> int:
            return int(
                db.execute(
                    "SELECT count(*) FROM turns WHERE agent=? AND ended_at>?", (agent, since)
                ).fetchone()[0]
            )

        return await self.store.call(q)

    async def spend(self) -> tuple[dict[str, AgentSpend], AgentSpend]:
        """Today's and the total spend and tokens of every agent, and of the hive."""
        day = self.today()

        def q(db: sqlite3.Connection) -> tuple[dict[str, AgentSpend], AgentSpend]:
            total = {
                r[0]: _spend(r[1:])
                for r in db.execute(
                    f"SELECT agent, total(cost_usd), total({_TOKENS}), count(*) FROM turns"
                    " GROUP BY agent"
                )
            }
            today = {
                r[0]: _spend(r[1:])
                for r in db.execute(
                    f"SELECT agent, total(cost_usd), total({_TOKENS}), count(*) FROM turns"
                    " WHERE day=? GROUP BY agent",
                    (day,),
                )
            }
            per = {
                agent: AgentSpend(
                    today_usd=today.get(agent, (0.0, 0, 0))[0],
                    total_usd=t[0],
                    today_tokens=today.get(agent, (0.0, 0, 0))[1],
                    total_tokens=t[1],
                    today_turns=today.get(agent, (0.0, 0, 0))[2],
                    total_turns=t[2],
                )
                for agent, t in total.items()
            }
            hive = AgentSpend(
                today_usd=sum(s.today_usd for s in per.values()),
                total_usd=sum(s.total_usd for s in per.values()),
                today_tokens=sum(s.today_tokens for s in per.values()),
                total_tokens=sum(s.total_tokens for s in per.values()),
                today_turns=sum(s.today_turns for s in per.values()),
                total_turns=sum(s.total_turns for s in per.values()),
            )
            return per, hive

        return await self.store.call(q)

    async def by_day(
        self, agent: str | None = None, since: str | None = None, limit: int = 1000
    ) -> list[UsageRow]:
        """One row per agent and UTC day, newest day first (`since`: a day, inclusive)."""
        where, args = "1", ()  # type: tuple[str, tuple[object, ...]]
        if agent is not None:
            where, args = where + " AND agent=?", (*args, agent)
        if since is not None:
            where, args = where + " AND day>=?", (*args, since)

        def q(db: sqlite3.Connection) -> list[UsageRow]:
            rows = db.execute(
                "SELECT agent, day, count(*), total(duration_ms), total(input_tokens),"
                " total(output_tokens), total(cache_read_tokens),"
                " total(cache_creation_tokens), total(cost_usd), total(tool_calls)"
                f" FROM turns WHERE {where} GROUP BY day, agent ORDER BY day DESC, agent"
                " LIMIT ?",
                (*args, limit),
            )
            return [
                UsageRow(
                    agent=r[0],
                    day=r[1],
                    turns=int(r[2]),
                    duration_ms=int(r[3]),
                    input_tokens=int(r[4]),
                    output_tokens=int(r[5]),
                    cache_read_tokens=int(r[6]),
                    cache_creation_tokens=int(r[7]),
                    cost_usd=round(float(r[8]), 6),
                    tool_calls=int(r[9]),
                )
                for r in rows
            ]

        return await self.store.call(q)
