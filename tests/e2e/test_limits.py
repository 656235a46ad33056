"""The limits of hive.toml against the real claude CLI, looping on purpose on the fake API."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import Swarm
from tests.fakes.anthropic import SeenRequest, hang, text, tool_use
from tests.helpers import admin, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

# A model claude knows the price of, so a turn costs something (the fake answers any).
PRICED = '"claude-sonnet-4-5"'


def woke(name: str) -> Any:
    return lambda r: f"You are {name}," in r.last_user_text


def after_tool(name: str) -> Any:
    return lambda r: bool(r.tool_results) and r.mentions(f"You are {name},")


def tool_text(request: SeenRequest) -> str:
    return json.dumps(request.tool_results)


async def apply_tree(swarm: Swarm, files: dict[str, str], *, idle: tuple[str, ...] = ()) -> None:
    """Push `files` to proposed main, approve the approval, wait for `idle` agents."""
    clone = swarm.clone(f"c{len(list(swarm.root.iterdir()))}")
    for path, content in files.items():
        clone.write(path, content)
    sha = clone.commit_push("policy and agents")

    async def pending() -> Any:
        return [a for a in await swarm.hive.approvals.query("pending") if a.sha == sha]

    (approval,) = await wait_for(pending)
    assert approval.errors == ()
    await swarm.hive.approvals.approve(approval.id)
    for name in idle:
        await swarm.wait_idle(name)


async def events_of(swarm: Swarm, prefix: str) -> list[dict[str, Any]]:
    return list(await swarm.hive.eventlog.recent(type_prefix=prefix))


async def test_a_looping_send_is_refused_by_its_rate_with_an_error_the_model_sees(
    swarm: Swarm,
) -> None:
    await apply_tree(
        swarm,
        {"agents/alice/agent.toml": 'description = "loops"\n[rate]\nsend_per_minute = 2\n'},
        idle=("alice",),
    )
    send = {"to": "operator", "body": "same again"}
    swarm.api.script(
        tool_use("mcp__hive__send", send, when=woke("alice")),
        tool_use("mcp__hive__send", send, when=after_tool("alice")),
        tool_use("mcp__hive__send", send, when=after_tool("alice")),
        text("stopping", when=after_tool("alice")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="report, please")
    with anyio.fail_after(60):
        refused = await swarm.api.wait_for(lambda r: "rate limit" in tool_text(r))
    assert "rate limit: 2 sends per minute; next in 30 s" in tool_text(refused)
    sent = [m for m in await swarm.hive.broker.messages("alice") if m.sender == "alice"]
    assert len(sent) == 2
    (event,) = await wait_for(lambda: events_of(swarm, "agent.rate_limited"))
    assert (event["agent"], event["what"]) == ("alice", "send")


async def test_a_turn_over_its_tool_call_cap_is_interrupted(swarm: Swarm) -> None:
    await apply_tree(
        swarm,
        {"agents/alice/agent.toml": 'description = "busy"\nmax_tool_calls_per_turn = 2\n'},
        idle=("alice",),
    )
    recv = {"wait_seconds": 0}
    swarm.api.script(
        tool_use("mcp__hive__recv", recv, when=woke("alice")),
        *(tool_use("mcp__hive__recv", recv, when=after_tool("alice")) for _ in range(6)),
        hang(when=after_tool("alice")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="poll forever")

    async def interrupted() -> Any:
        last = (swarm.hive.turns.get("alice") or {}).get("last_turn") or {}
        return last if last.get("interrupted") == "tool_calls" else None

    last = await wait_for(interrupted, timeout=60)
    # Interrupted at the third call (claude may have started one more meanwhile).
    assert last["status"] == "cancelled" and last["tool_calls"] in (3, 4)
    (event,) = await wait_for(lambda: events_of(swarm, "agent.limited"))
    assert event["limit"] == "tool_calls" and "interrupted" in event["message"]
    (row,) = await swarm.hive.usage.by_day("alice")
    assert row.tool_calls == last["tool_calls"] and row.turns == 1


async def test_an_agent_over_its_turns_per_hour_is_held_with_its_inbox_kept(
    swarm: Swarm,
) -> None:
    await apply_tree(
        swarm,
        {"agents/alice/agent.toml": 'description = "chatty"\nmax_turns_per_hour = 2\n'},
        idle=("alice",),
    )
    swarm.api.script(*(text(f"done {n}", when=woke("alice")) for n in range(3)))
    async with admin(swarm.hive) as client:
        for n in range(3):
            await client.call("send", to="alice", body=f"job {n}")
        held = await wait_for(lambda: swarm.hive.records.hold("alice"), timeout=60)
        assert held == "turns"
        (row,) = [r for r in await client.call("agents") if r["name"] == "alice"]
        assert row["hold"] == "turns"
        await wait_for(lambda: _state(swarm, "alice", "stopped"), timeout=30)
        # The third job was not lost: it waits in the inbox.
        inbox = await client.call("inbox", name="alice")
        assert [m["body"] for m in inbox] == ["job 2"]
        (event,) = await wait_for(lambda: events_of(swarm, "agent.limited"))
        assert event["hold"] == "turns" and "2 turns within the last hour" in event["message"]
        # The operator lets it run on: the hold is lifted and the job is done.
        await client.call("start", name="alice")
        assert await swarm.hive.records.hold("alice") is None

        async def inbox_empty() -> bool:
            return bool(await client.call("inbox", name="alice") == [])

        await wait_for(inbox_empty, timeout=60)
    assert await swarm.hive.records.hold("alice") is None  # excused for the hour


async def _state(swarm: Swarm, name: str, state: str) -> bool:
    return (await swarm.hive.runtime.observe(name)).state.value == state


async def test_an_agent_over_its_budget_is_held_and_a_raised_budget_lifts_it(
    swarm: Swarm,
) -> None:
    tiny = f'description = "costs"\nmodel = {PRICED}\nbudget_usd_per_day = 0.00001\n'
    await apply_tree(swarm, {"agents/alice/agent.toml": tiny}, idle=("alice",))
    swarm.api.script(text("that cost something", when=woke("alice")))
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="think hard")
        assert await wait_for(lambda: swarm.hive.records.hold("alice"), timeout=60) == "budget"
        (row,) = [r for r in await client.call("agents") if r["name"] == "alice"]
        assert row["hold"] == "budget" and row["spend_today_usd"] > 0.00001
        usage = await client.call("usage", agent="alice")
        assert usage[0]["turns"] == 1 and usage[0]["cost_usd"] > 0
        assert usage[0]["input_tokens"] > 0 and usage[0]["output_tokens"] > 0
    raised = tiny.replace("0.00001", "5")
    await apply_tree(swarm, {"agents/alice/agent.toml": raised})
    await wait_for(lambda: _no_hold(swarm, "alice"), timeout=30)
    await swarm.wait_idle("alice")


async def _no_hold(swarm: Swarm, name: str) -> bool:
    return await swarm.hive.records.hold(name) is None


async def test_a_looping_ask_operator_is_rated_and_cancelled_in_one_wake(swarm: Swarm) -> None:
    await apply_tree(swarm, {"hive.toml": "[rate]\nask_operator_per_hour = 2\n"})
    ask = {"question": "may I?"}
    swarm.api.script(
        tool_use("mcp__hive__ask_operator", ask, when=woke("hm1nd")),
        tool_use("mcp__hive__ask_operator", ask, when=after_tool("hm1nd")),
        tool_use("mcp__hive__ask_operator", ask, when=after_tool("hm1nd")),
        text("waiting for answers", when=after_tool("hm1nd")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="hm1nd", body="ask away")
        with anyio.fail_after(60):
            refused = await swarm.api.wait_for(lambda r: "rate limit" in tool_text(r))
        assert "rate limit: 2 questions per hour; next in 1800 s" in tool_text(refused)
        await swarm.wait_idle("hm1nd")
        assert len(await client.call("questions")) == 2

        def resolved(r: SeenRequest) -> bool:
            return "resolved one of your questions" in r.last_user_text

        swarm.api.script(text("understood", when=resolved))
        cancelled = await client.call("questions-cancel", agent="hm1nd")
        assert cancelled["cancelled"] == 2
        assert await client.call("questions") == []
        with anyio.fail_after(60):
            seen = await swarm.api.wait_for(resolved)
        assert '\\"cancelled\\": 2' in json.dumps(seen.messages)
        await swarm.wait_idle("hm1nd")
        wakes = [r for r in swarm.api.main_requests if resolved(r) and not r.tool_results]
        assert len(wakes) == 1  # one wake for both cancellations


async def test_hive_cancel_interrupts_the_running_turn(swarm: Swarm) -> None:
    await apply_tree(swarm, {"agents/alice/agent.toml": 'description = "slow"\n'}, idle=("alice",))
    swarm.api.script(hang(when=woke("alice")))
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="take forever")
        with anyio.fail_after(60):
            await swarm.api.wait_for(woke("alice"))
        await wait_for(lambda: swarm.turn_state("alice") == "thinking", timeout=30)
        answer = await client.call("cancel", name="alice")
        assert answer == {"agent": "alice", "cancelled": True}
        await swarm.wait_idle("alice")
        assert swarm.hive.turns["alice"]["last_turn"]["status"] == "cancelled"
        assert await client.call("inbox", name="alice") == []
        assert (await client.call("cancel", name="alice"))["cancelled"] is False
    cancels = await wait_for(lambda: events_of(swarm, "agent.cancel"))
    assert [e["agent"] for e in cancels] == ["alice"]
