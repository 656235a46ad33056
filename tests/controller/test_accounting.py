"""Accounting and the holds it drives: every finished turn in the store, summed per agent
and UTC day, and the budget / turns holds that are lifted by the operator, by a raised
limit or by time. The harness is played by the test over alice's real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.cli_admin import SPECS, render
from controller.hive import Hive
from controller.protocol import Client, ProtocolError
from hyperhive.daemon import build_hive
from reconcilers.runtime import ContainerState
from tests.fakes.clock import FakeClock
from tests.helpers import Clone, admin, connect_harness, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


def turn(n: int, cost: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": n,
        "started_at": f"2026-01-01T00:00:{n:02}+00:00",
        "status": "ok",
        "duration_ms": 1500,
        "cost_usd": cost,
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 1000,
        "cache_creation_tokens": 50,
        "model": "claude-sonnet-4-5",
        "tool_calls": 2,
        **extra,
    }


async def report(harness: Client, last: dict[str, Any]) -> None:
    await harness.call("turn_state", state="idle", last_turn=last)


async def apply(hive: Hive, root: Path, files: dict[str, str]) -> None:
    clone = Clone(root / f"c{len(list(root.iterdir()))}", hive.git.proposed_path)
    for path, text in files.items():
        clone.write(path, text)
    sha = clone.commit_push("change")

    async def pending() -> Any:
        return [a for a in await hive.approvals.query("pending") if a.sha == sha]

    (approval,) = await wait_for(pending)
    assert approval.errors == ()
    await hive.approvals.approve(approval.id)


async def running(hive: Hive, name: str) -> bool:
    return (await hive.runtime.observe(name)).state is ContainerState.RUNNING


@asynccontextmanager
async def hive_on(root: Path, clock: FakeClock | None = None) -> AsyncIterator[Hive]:
    settings = hive_settings(root, limits_poll=5.0)
    async with running_hive(settings, lambda s: build_hive(s, clock=clock)) as hive:
        yield hive


async def test_finished_turns_are_summed_per_agent_and_day_and_survive_a_restart(
    short_dir: Path,
) -> None:
    async with hive_on(short_dir) as hive:
        await apply(hive, short_dir, {"agents/alice/agent.toml": 'description = "a"\n'})
        await wait_for(lambda: running(hive, "alice"))
        async with await connect_harness(hive, "alice") as harness:
            await report(harness, turn(1, 0.25))
            await report(harness, turn(1, 0.25))  # the same turn, reported again
            await report(harness, turn(2, 0.5, status="error"))
            with pytest.raises(ProtocolError, match="last_turn"):
                await report(harness, turn(3, -1.0))
        async with admin(hive) as client:
            (row,) = await client.call("usage", agent="alice")
            agents = {r["name"]: r for r in await client.call("agents")}
        assert row == {
            "agent": "alice",
            "day": datetime.now(UTC).date().isoformat(),
            "turns": 2,
            "duration_ms": 3000,
            "input_tokens": 200,
            "output_tokens": 40,
            "cache_read_tokens": 2000,
            "cache_creation_tokens": 100,
            "cost_usd": 0.75,
            "tool_calls": 4,
        }
        assert agents["alice"]["spend_today_usd"] == 0.75
        assert agents["alice"]["tokens_total"] == 2340
        assert agents["hm1nd"]["spend_total_usd"] == 0.0
        shown = render(SPECS["agents"], list(agents.values()))
        assert "hive: $0.7500 today (UTC), $0.7500 in total; 2340 tokens today" in shown
    async with hive_on(short_dir) as hive, admin(hive) as client:
        agents = {r["name"]: r for r in await client.call("agents")}
        assert agents["alice"]["spend_total_usd"] == 0.75
        assert [r["turns"] for r in await client.call("usage", since="0d")] == [2]
        assert await client.call("usage", since="2999-01-01") == []
        with pytest.raises(ProtocolError, match="neither a day"):
            await client.call("usage", since="yesterday")


async def test_a_budget_hold_is_lifted_by_the_next_utc_day(short_dir: Path) -> None:
    clock = FakeClock(wall=datetime(2026, 1, 1, 22, 0, tzinfo=UTC))
    async with hive_on(short_dir, clock) as hive:
        await apply(
            hive,
            short_dir,
            {
                "hive.toml": "budget_usd_per_day = 1.0\n",
                "agents/alice/agent.toml": 'description = "a"\n',
            },
        )
        await wait_for(lambda: running(hive, "alice"))
        async with await connect_harness(hive, "alice") as harness:
            await report(harness, turn(1, 0.6))
            assert await hive.records.hold("alice") is None
            await report(harness, turn(2, 0.6))
        assert await hive.records.hold("alice") == "budget"
        await wait_for(lambda: _stopped(hive, "alice"))
        (event,) = await wait_for(lambda: hive.eventlog.recent(type_prefix="agent.limited"))
        assert "spent $1.2000 today (UTC), its budget is $1.00 a day" in event["message"]
        clock.advance(3600)  # 23:00: the same day, still held
        await hive.enforcer.review()
        assert await hive.records.hold("alice") == "budget"
        clock.advance(3600 + 5)  # past midnight UTC: the poll lifts it
        await wait_for(lambda: _no_hold(hive, "alice"))
        await wait_for(lambda: running(hive, "alice"))


async def _stopped(hive: Hive, name: str) -> bool:
    return (await hive.runtime.observe(name)).state is ContainerState.STOPPED


async def _no_hold(hive: Hive, name: str) -> bool:
    return await hive.records.hold(name) is None


async def test_a_turns_hold_is_lifted_when_the_last_hour_has_room_again(short_dir: Path) -> None:
    clock = FakeClock()
    async with hive_on(short_dir, clock) as hive:
        await apply(
            hive,
            short_dir,
            {"agents/alice/agent.toml": 'description = "a"\nmax_turns_per_hour = 2\n'},
        )
        await wait_for(lambda: running(hive, "alice"))
        async with await connect_harness(hive, "alice") as harness:
            await report(harness, turn(1, 0.0))
            await report(harness, turn(2, 0.0))
        assert await hive.records.hold("alice") == "turns"
        async with admin(hive) as client:
            (row,) = [r for r in await client.call("agents") if r["name"] == "alice"]
        assert row["hold"] == "turns"
        clock.advance(1800)
        assert await hive.enforcer.review() == []
        clock.advance(1805)
        await wait_for(lambda: _no_hold(hive, "alice"))
        await wait_for(lambda: running(hive, "alice"))


async def test_the_hive_budget_holds_every_agent(short_dir: Path) -> None:
    async with hive_on(short_dir) as hive:
        await apply(
            hive,
            short_dir,
            {
                "hive.toml": "hive_budget_usd_per_day = 1\n",
                "agents/alice/agent.toml": 'description = "a"\n',
                "agents/bob/agent.toml": 'description = "b"\n',
            },
        )
        await wait_for(lambda: running(hive, "bob"))
        async with await connect_harness(hive, "alice") as harness:
            await report(harness, turn(1, 1.5))
        assert await hive.records.holds() == {"alice": "budget", "bob": "budget", "hm1nd": "budget"}
        # The operator lets bob run on; raising the hive's budget lifts the others.
        async with admin(hive) as client:
            await client.call("start", name="bob")
        await hive.enforcer.review()
        assert await hive.records.hold("bob") is None
        await apply(hive, short_dir, {"hive.toml": "hive_budget_usd_per_day = 10\n"})
        await wait_for(lambda: _no_holds(hive))


async def _no_holds(hive: Hive) -> bool:
    return await hive.records.holds() == {}


async def test_a_held_agents_inbox_is_kept_and_can_be_purged_into_the_audit_log(
    short_dir: Path,
) -> None:
    async with hive_on(short_dir) as hive:
        await apply(
            hive,
            short_dir,
            {
                "agents/alice/agent.toml": 'description = "a"\nenabled = false\n',
                "agents/bob/agent.toml": 'description = "b"\n',
            },
        )
        await wait_for(lambda: running(hive, "bob"))
        async with admin(hive) as client, await connect_harness(hive, "bob") as bob:
            for n in range(3):
                await bob.call("send", to="alice", body=f"spam {n}")
            await client.call("send", to="alice", body="from you")
            inbox = await client.call("inbox", name="alice")
            assert [m["sender"] for m in inbox] == ["bob", "bob", "bob", "operator"]
            purged = await client.call("inbox-purge", name="alice", sender="bob")
            assert purged["purged"] == 3 and purged["sender"] == "bob"
            assert [m["body"] for m in await client.call("inbox", name="alice")] == ["from you"]
            # Never silently dropped: still in the messages, and listed in the audit log.
            kept = await client.call("messages", agent="alice")
            assert sorted(m["body"] for m in kept if m["sender"] == "bob") == [
                "spam 0",
                "spam 1",
                "spam 2",
            ]
            (event,) = await wait_for(lambda: client.call("events", type="message.purged"))
            assert event["agent"] == "alice" and event["purged"] == 3
            assert [m["body"] for m in event["messages"]] == ["spam 0", "spam 1", "spam 2"]
            assert (await client.call("inbox-purge", name="alice"))["purged"] == 1
            async with await connect_harness(hive, "alice") as alice:  # nothing comes back
                assert await alice.call("recv", lease=True) is None
            with pytest.raises(ProtocolError, match="no agent"):
                await client.call("inbox", name="nobody")


async def test_cancelling_many_questions_wakes_the_manager_once(short_dir: Path) -> None:
    async with hive_on(short_dir) as hive, admin(hive) as client:
        for n in range(30):
            await hive.questions.ask("hm1nd", f"question {n}?")
        # A harness's permission question is cancelled too, and its waiter told.
        asked = await hive.questions.ask(
            "alice", "alice wants Bash", ["allow once", "deny"], kind="permission"
        )
        waited: list[Any] = []

        async def wait_permission() -> None:
            waited.append(await hive.questions.wait(asked.id))

        with pytest.raises(ProtocolError, match="--agent NAME, or --all"):
            await client.call("questions-cancel")
        before = len(await hive.broker.inbox("hm1nd"))
        cancelled = await client.call("questions-cancel", agent="hm1nd")
        assert cancelled["cancelled"] == 30
        (told,) = (await hive.broker.inbox("hm1nd"))[before:]
        assert told.kind == "operator_answered" and '"cancelled": 30' in told.body
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_permission)
            await anyio.wait_all_tasks_blocked()
            assert (await client.call("questions-cancel", all=True))["cancelled"] == 1
        assert waited[0].status == "cancelled"
        assert await hive.broker.inbox("alice") == []  # nothing in its inbox
        assert await client.call("questions") == []
