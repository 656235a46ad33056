"""Question expiry on an injected clock: a TTL of minutes is tested without waiting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from controller.broker import Broker
from controller.bus import Bus, EventType
from controller.questions import Questions
from controller.store import Store
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def open_questions(root: Path, clock: FakeClock) -> AsyncIterator[tuple[Questions, Bus]]:
    store = Store(root / "hive.sqlite")
    bus = Bus()
    broker = Broker(store, bus)
    questions = Questions(store, bus, broker, clock=clock, poll=3600)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(broker.serve)
            await tg.start(questions.serve)
            yield questions, bus
            tg.cancel_scope.cancel()
    finally:
        store.close()


async def test_a_question_expires_at_its_ttl_and_the_asker_is_told(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_questions(tmp_path, clock) as (questions, bus):
        with bus.subscribe(types=[EventType.QUESTION_EXPIRED]) as expired:
            asked = await questions.ask("hm1nd", "ship it?", ["yes", "no"], ttl_seconds=300)
            untimed = await questions.ask("hm1nd", "and then?")
            assert asked.expires_at == "2026-01-01T00:05:00.000+00:00"
            await anyio.wait_all_tasks_blocked()
            clock.advance(299)
            await anyio.wait_all_tasks_blocked()
            assert (await questions.get(asked.id)).status == "pending"
            clock.advance(1)
            with anyio.fail_after(5):
                event = await expired.next()
        assert event.data["question"].id == asked.id
        assert (await questions.get(asked.id)).status == "expired"
        assert (await questions.get(untimed.id)).status == "pending"
        (told,) = await questions.broker.inbox("hm1nd")
        assert told.kind == "operator_answered"
        assert json.loads(told.body)["status"] == "expired"


async def test_a_sooner_question_wakes_the_expiry_sleeping_toward_a_later_one(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_questions(tmp_path, clock) as (questions, bus):
        with bus.subscribe(types=[EventType.QUESTION_EXPIRED]) as expired:
            late = await questions.ask("hm1nd", "by tonight?", ttl_seconds=6 * 3600)
            await anyio.wait_all_tasks_blocked()
            soon = await questions.ask("hm1nd", "right now?", ttl_seconds=60)
            await anyio.wait_all_tasks_blocked()
            clock.advance(60)
            with anyio.fail_after(5):
                event = await expired.next()
            assert event.data["question"].id == soon.id
            assert (await questions.get(late.id)).status == "pending"
            clock.advance(6 * 3600)
            with anyio.fail_after(5):
                event = await expired.next()
            assert event.data["question"].id == late.id


async def test_a_permission_question_expires_for_its_waiter_and_never_reaches_the_inbox(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_questions(tmp_path, clock) as (questions, _):
        asked = await questions.ask(
            "alice",
            "alice wants Bash: `rm -rf x`",
            ["allow once", "deny"],
            ttl_seconds=60,
            kind="permission",
        )
        assert asked.kind == "permission"
        decided: list[str] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                decided.append((await questions.wait(asked.id)).status)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert decided == []
            clock.advance(60)
        assert decided == ["expired"]
        assert await questions.broker.inbox("alice") == []


async def test_an_answered_permission_question_wakes_its_waiter_at_once(tmp_path: Path) -> None:
    async with open_questions(tmp_path, FakeClock()) as (questions, _):
        asked = await questions.ask(
            "alice", "alice wants Bash: `ls`", ["allow once", "deny"], kind="permission"
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(questions.wait, asked.id)
            await anyio.wait_all_tasks_blocked()
            await questions.answer(asked.id, "allow once")
        assert (await questions.wait(asked.id)).answer == "allow once"
        assert await questions.broker.inbox("alice") == []
