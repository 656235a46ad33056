"""The manager's questions to the operator (`ask_operator`), and the harnesses' permission
questions (`ask_permission`: may this agent run this tool call?).

A question is free text (no options), a radio choice (options) or checkboxes (options and
`multi`). It ends answered, cancelled or expired, and each ending reaches the asker's
inbox as an `operator_answered` message (JSON body), so the manager learns the outcome
through the same durable path as any other message. Expiry is driven by one task that
sleeps until the nearest deadline; it is woken when a question is asked, and re-reads the
pending questions every `poll` seconds at the latest. Deadlines are wall-clock times
(they are stored), read from the injected clock, so a test moves time on by hand.

A permission question (`kind` "permission") does not reach the asker's inbox: the
harness that asked waits for it (`wait`) inside the running turn, and claude gets the
answer as the tool call's permission.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime, timedelta

import anyio

from controller.broker import OPERATOR, Broker
from controller.bus import Bus, EventType
from controller.errors import ConflictError, InvalidError, NoSpaceError, NotFoundError
from controller.paging import Page
from controller.store import Store
from controller.values import Question
from reconcilers.clock import Clock, SystemClock, iso, wait_event

__all__ = ["MAX_TTL", "STATUSES", "Questions"]

log = logging.getLogger(__name__)

MAX_TTL = 7 * 24 * 3600
STATUSES = ("pending", "answered", "cancelled", "expired")


def _row(row: sqlite3.Row) -> Question:
    answer = None if row["answer"] is None else json.loads(row["answer"])
    return Question(
        id=row["id"],
        asker=row["asker"],
        question=row["question"],
        options=tuple(json.loads(row["options"])),
        multi=bool(row["multi"]),
        status=row["status"],
        answer=tuple(answer) if isinstance(answer, list) else answer,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
        kind=row["kind"],
    )


class Questions:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        broker: Broker,
        *,
        clock: Clock | None = None,
        poll: float = 60.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.broker = broker
        self.clock: Clock = clock or SystemClock()
        self.poll = poll
        self._wake = anyio.Event()
        self._resolved: dict[int, anyio.Event] = {}

    async def ask(
        self,
        asker: str,
        question: str,
        options: list[str] | None = None,
        multi: bool = False,
        ttl_seconds: int | None = None,
        kind: str = "question",
    ) -> Question:
        if not question.strip():
            raise InvalidError("the question is empty")
        options = [o for o in (options or []) if o.strip()]
        if len(set(options)) != len(options):
            raise InvalidError("options must be distinct")
        if multi and not options:
            raise InvalidError("multi needs options to choose from")
        if ttl_seconds is not None and not 0 < ttl_seconds <= MAX_TTL:
            raise InvalidError(f"ttl_seconds must be between 1 and {MAX_TTL}")
        now = self.clock.utcnow()
        expires = None
        if ttl_seconds is not None:
            expires = iso(now + timedelta(seconds=ttl_seconds))

        def q(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO questions(asker, question, options, multi, status, created_at,"
                " expires_at, kind) VALUES (?,?,?,?,'pending',?,?,?)",
                (asker, question, json.dumps(options), int(multi), iso(now), expires, kind),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

        question_id = await self.store.call(q)
        asked = await self.get(question_id)
        self.bus.publish(EventType.QUESTION_ASKED, question=asked)
        self._wake.set()
        return asked

    async def wait(self, question_id: int) -> Question:
        """Wait until the question is answered, cancelled or expired; returns it then."""
        while True:
            resolved = self._resolved.setdefault(question_id, anyio.Event())
            try:
                question = await self.get(question_id)
                if question.status != "pending":
                    return question
                await resolved.wait()
            finally:
                if self._resolved.get(question_id) is resolved and resolved.is_set():
                    del self._resolved[question_id]

    async def get(self, question_id: int) -> Question:
        def q(db: sqlite3.Connection) -> Question | None:
            row = db.execute("SELECT * FROM questions WHERE id=?", (question_id,)).fetchone()
            return None if row is None else _row(row)

        found = await self.store.call(q)
        if found is None:
            raise NotFoundError(f"no question #{question_id}")
        return found

    async def query(
        self, status: str | None = "pending", limit: int = 200, page: Page | None = None
    ) -> list[Question]:
        """Pending (or any status's) questions oldest first, all questions newest first;
        with a `page` (a client's list), one page of them."""
        if status is not None and status not in STATUSES:
            raise InvalidError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        where, params = page.where() if page is not None else ("1", ())
        limit = page.limit if page is not None else limit

        def q(db: sqlite3.Connection) -> list[Question]:
            if status is None:
                rows = db.execute(
                    f"SELECT * FROM questions WHERE {where} ORDER BY id DESC LIMIT ?",
                    (*params, limit),
                )
            else:
                rows = db.execute(
                    f"SELECT * FROM questions WHERE status=? AND {where} ORDER BY id LIMIT ?",
                    (status, *params, limit),
                )
            found = (_row(r) for r in rows)
            return page.take(found) if page is not None else list(found)

        return await self.store.call(q)

    async def count(self, status: str | None = "pending") -> int:
        """How many questions there are of `status` (of any with None)."""

        def q(db: sqlite3.Connection) -> int:
            if status is None:
                return int(db.execute("SELECT count(*) FROM questions").fetchone()[0])
            sql = "SELECT count(*) FROM questions WHERE status=?"
            return int(db.execute(sql, (status,)).fetchone()[0])

        return await self.store.call(q)

    async def newest(self, status: str | None, limit: int, offset: int = 0) -> list[Question]:
        """One screen of questions of `status` (None: any), newest first (the dashboard's
        pages: `offset` rows skipped)."""

        def q(db: sqlite3.Connection) -> list[Question]:
            where, args = ("status=?", (status,)) if status is not None else ("1", ())
            rows = db.execute(
                f"SELECT * FROM questions WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [_row(r) for r in rows]

        return await self.store.call(q)

    def _check_answer(self, question: Question, answer: object) -> str | tuple[str, ...]:
        options = question.options
        if question.multi:
            chosen = answer if isinstance(answer, list | tuple) else [answer]
            if not all(isinstance(c, str) and c in options for c in chosen):
                raise InvalidError(f"choose any of: {', '.join(options)}")
            return tuple(o for o in options if o in chosen)
        if not isinstance(answer, str) or not answer.strip():
            raise InvalidError("the answer is empty")
        if options and answer not in options:
            raise InvalidError(f"choose one of: {', '.join(options)}")
        return answer

    async def answer(self, question_id: int, answer: object) -> Question:
        question = await self._pending(question_id)
        return await self._resolve(question, "answered", self._check_answer(question, answer))

    async def cancel(self, question_id: int) -> Question:
        return await self._resolve(await self._pending(question_id), "cancelled", None)

    async def cancel_many(self, asker: str | None = None) -> list[Question]:
        """Cancel every pending question (of `asker`, else of all) in one transaction, and
        tell each asker once: one `operator_answered` message listing all of its
        cancellations, so a flood of questions costs the manager one wake, not one each."""
        decided = iso(self.clock.utcnow())

        def q(db: sqlite3.Connection) -> list[Question]:
            where, args = "status='pending'", ()  # type: tuple[str, tuple[object, ...]]
            if asker is not None:
                where, args = where + " AND asker=?", (asker,)
            rows = db.execute(
                f"UPDATE questions SET status='cancelled', answer='null', decided_at=? "
                f"WHERE {where} RETURNING *",
                (decided, *args),
            ).fetchall()
            return sorted((_row(r) for r in rows), key=lambda question: question.id)

        cancelled = await self.store.call(q)
        by_asker: dict[str, list[Question]] = {}
        for question in cancelled:
            waiter = self._resolved.pop(question.id, None)
            if waiter is not None:
                waiter.set()
            if question.kind != "permission":  # its harness learns it from the waiter
                by_asker.setdefault(question.asker, []).append(question)
        for who, questions in sorted(by_asker.items()):
            body = json.dumps(
                {
                    "status": "cancelled",
                    "cancelled": len(questions),
                    # The texts are cut: the message must fit however many there were.
                    "questions": [
                        {"question_id": x.id, "question": x.question[:200]} for x in questions
                    ][:500],
                    "note": "the operator cancelled these questions at once; do not ask "
                    "them again unless something changed",
                }
            )
            await self.broker.send(OPERATOR, who, body, kind="operator_answered")
        for question in cancelled:
            self.bus.publish(EventType.QUESTION_CANCELLED, question=question, bulk=True)
        return cancelled

    async def _pending(self, question_id: int) -> Question:
        question = await self.get(question_id)
        if question.status != "pending":
            raise ConflictError(f"question #{question_id} is already {question.status}")
        return question

    async def _resolve(
        self, question: Question, status: str, answer: str | tuple[str, ...] | None
    ) -> Question:
        answer_json = json.dumps(list(answer) if isinstance(answer, tuple) else answer)
        decided = iso(self.clock.utcnow())

        def q(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE questions SET status=?, answer=?, decided_at=? WHERE id=? AND "
                "status='pending'",
                (status, answer_json, decided, question.id),
            ).rowcount

        if await self.store.call(q) == 0:
            raise ConflictError(f"question #{question.id} was resolved meanwhile")
        resolved = await self.get(question.id)
        body = json.dumps(
            {
                "question_id": question.id,
                "question": question.question,
                "status": status,
                "answer": json.loads(answer_json),
            }
        )
        if question.kind != "permission":  # the harness waiting for it gets it instead
            await self.broker.send(OPERATOR, question.asker, body, kind="operator_answered")
        waiter = self._resolved.pop(question.id, None)
        if waiter is not None:
            waiter.set()
        self.bus.publish(EventType(f"question.{status}"), question=resolved)
        return resolved

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Expire questions at their deadline."""
        task_status.started()
        while True:
            self._wake = anyio.Event()
            # Both readings before the store is read: the deadline then does not slip
            # by however long the query took.
            now, started = self.clock.utcnow(), self.clock.now()
            nearest = self.poll
            for question in await self.query("pending", limit=10_000):
                if question.expires_at is None:
                    continue
                left = (datetime.fromisoformat(question.expires_at) - now).total_seconds()
                if left <= 0:
                    try:
                        await self._resolve(question, "expired", None)
                    except ConflictError:
                        pass  # answered or cancelled meanwhile
                    except NoSpaceError as exc:
                        log.warning("question #%s expires later: %s", question.id, exc)
                else:
                    nearest = min(nearest, left)
            await wait_event(self.clock, self._wake, started + nearest)
