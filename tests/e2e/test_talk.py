"""Agents that talk, end to end: real harness processes, real claude, real MCP, the broker."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.protocol import ProtocolError, connect_client
from gitstore.plan import Action, PlanStep
from harness.agent import Agent, AgentConfig
from harness.history import open_history
from tests.e2e.conftest import Swarm
from tests.fakes.anthropic import SeenRequest, hang, text, tool_use
from tests.helpers import admin, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def woke(name: str) -> Any:
    return lambda r: f"You are {name}," in r.last_user_text


def after_tool(name: str) -> Any:
    return lambda r: bool(r.tool_results) and r.mentions(f"You are {name},")


async def turns_of(swarm: Swarm, name: str) -> list[Any]:
    async with await open_history(swarm.hive.layout.notes_dir(name)) as history:
        return await history.turns()


async def test_operator_to_alice_to_bob(swarm: Swarm) -> None:
    await swarm.apply("alice", "bob")
    swarm.api.script(
        tool_use("mcp__hive__send", {"to": "bob", "body": "hello bob"}, when=woke("alice")),
        text("told bob", when=after_tool("alice")),
        text("hi alice, got it", when=woke("bob")),
    )
    async with admin(swarm.hive) as client:
        sent = await client.call("send", to="alice", body="please greet bob")
    seen: SeenRequest = await _bob_woken(swarm)
    assert "hello bob" in seen.last_user_text
    assert "from alice" in seen.last_user_text

    async def both_acked() -> bool:
        rows = await swarm.hive.broker.messages(limit=10)
        return len(rows) == 2 and all(r.acked_at for r in rows)

    await wait_for(both_acked, timeout=30)
    rows = {(r.sender, r.recipient): r for r in await swarm.hive.broker.messages()}
    assert rows[("operator", "alice")].id == sent["id"]
    assert rows[("alice", "bob")].body == "hello bob"
    await wait_for(lambda: swarm.turn_state("bob") == "idle")
    bob_turns = await turns_of(swarm, "bob")
    assert [t.status for t in bob_turns] == ["ok"]
    assert bob_turns[0].wake_message_id == rows[("alice", "bob")].id
    assert swarm.hive.turns["alice"]["last_turn"]["status"] == "ok"


async def _bob_woken(swarm: Swarm) -> SeenRequest:
    with anyio.fail_after(60):
        return await swarm.api.wait_for(woke("bob"))


async def test_claude_killed_mid_turn_redelivers_the_message(swarm: Swarm) -> None:
    await swarm.apply("alice")
    swarm.api.script(hang(when=woke("alice")))
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="long job")
    with anyio.fail_after(60):
        await swarm.api.wait_for(woke("alice"))
    await wait_for(lambda: swarm.turn_state("alice") == "thinking")
    claude_pids = _claude_children(swarm, "alice")
    assert claude_pids
    for pid in claude_pids:
        os.kill(pid, signal.SIGKILL)
    swarm.api.script(text("done at last", when=woke("alice")))

    async def second_turn_ok() -> bool:
        return [t.status for t in await turns_of(swarm, "alice")][:1] == ["ok"]

    await wait_for(second_turn_ok, timeout=60)
    statuses = [t.status for t in await turns_of(swarm, "alice")]
    assert statuses[-1] == "error"  # the killed turn, oldest last
    (message,) = await swarm.hive.broker.messages("alice")
    await wait_for(lambda: _acked(swarm, message.id))
    wakes = [r for r in swarm.api.main_requests if woke("alice")(r)]
    assert len(wakes) == 2 and all("long job" in r.last_user_text for r in wakes)


async def _acked(swarm: Swarm, message_id: int) -> bool:
    rows = await swarm.hive.broker.messages(limit=50)
    return any(r.id == message_id and r.acked_at for r in rows)


def _claude_children(swarm: Swarm, name: str) -> list[int]:
    proc = json.loads((swarm.hive.layout.agent_dir(name) / "proc.json").read_text())
    harness = proc["pid"]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == harness and any(b"claude" in part for part in cmdline[:1]):
            found.append(int(entry.name))
    return found


async def test_an_agent_cannot_call_manager_tools_or_send_as_another(swarm: Swarm) -> None:
    await swarm.apply("alice")
    swarm.api.script(
        tool_use("mcp__hive__send", {"to": "hm1nd", "body": "from alice"}, when=woke("alice")),
        text("ok", when=after_tool("alice")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="alice", body="go")
    await wait_for(lambda: _acked_count(swarm, 2), timeout=60)
    rows = await swarm.hive.broker.messages("hm1nd")
    assert [(r.sender, r.body) for r in rows] == [("alice", "from alice")]
    # The socket itself refuses manager methods: no claude needed to show it.
    client = await connect_client(swarm.hive.layout.socket("alice"))
    async with client:
        for cmd, args in (
            ("request_spawn", {"name": "evil"}),
            ("kill", {"name": "hm1nd"}),
            ("ask_operator", {"question": "?"}),
            ("list_agents", {}),
        ):
            with pytest.raises(ProtocolError) as info:
                await client.call(cmd, **args)
            assert info.value.code == "forbidden"
        with pytest.raises(ProtocolError, match="unknown argument"):
            await client.call("send", to="bob", body="x", sender="hm1nd")
        with pytest.raises(ProtocolError, match="no agent 'nobody'"):
            await client.call("send", to="nobody", body="x")
        with pytest.raises(ProtocolError, match="limit"):
            await client.call("send", to="hm1nd", body="x" * (256 * 1024 + 1))


async def _acked_count(swarm: Swarm, n: int) -> bool:
    rows = await swarm.hive.broker.messages(limit=50)
    return len([r for r in rows if r.acked_at]) >= n


async def test_cancel_mid_turn_ends_the_turn_and_acknowledges(swarm: Swarm) -> None:
    await swarm.apply("alice")
    async with admin(swarm.hive) as client:
        await client.call("kill", name="alice")  # we run alice's harness in this process
    env = {k: v for k, v in swarm.hive.settings.environ.items()}
    env.update(
        {
            "HIVE_AGENT": "alice",
            "HIVE_SOCKET": str(swarm.hive.layout.socket("alice")),
            "HIVE_STATE": str(swarm.hive.layout.notes_dir("alice")),
        }
    )
    config = AgentConfig.from_env(env)
    config = dataclasses.replace(
        config,
        # The key hive-c0re minted for alice's (killed) harness: this one stands in for it.
        key=swarm.hive.layout.harness_key("alice").read_text(),
        claude=dataclasses.replace(
            config.claude,
            env={**env, "CLAUDE_CONFIG_DIR": str(swarm.hive.layout.claude_dir("alice"))},
            interrupt_grace=1.0,
            term_grace=1.0,
        ),
    )
    agent = Agent(config)
    swarm.api.script(hang(when=woke("alice")))
    async with anyio.create_task_group() as tg:
        await tg.start(agent.serve)
        async with admin(swarm.hive) as client:
            await client.call("send", to="alice", body="take forever")
        with anyio.fail_after(60):
            await swarm.api.wait_for(woke("alice"))
        await wait_for(lambda: agent.state == "thinking")
        started = anyio.current_time()
        assert agent.cancel()
        await wait_for(lambda: agent.state == "idle", timeout=10)
        assert anyio.current_time() - started < 5
        assert agent.last_turn is not None and agent.last_turn["status"] == "cancelled"
        (message,) = await swarm.hive.broker.messages("alice")
        await wait_for(lambda: _acked(swarm, message.id))
        tg.cancel_scope.cancel()


async def test_request_spawn_becomes_an_approval_and_the_agent_runs(swarm: Swarm) -> None:
    swarm.api.script(
        tool_use(
            "mcp__hive__request_spawn",
            {"name": "scout", "description": "looks around"},
            when=woke("hm1nd"),
        ),
        text("asked the operator", when=after_tool("hm1nd")),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="hm1nd", body="we need a scout")
    (approval,) = await wait_for(lambda: swarm.hive.approvals.query("pending"), timeout=60)
    assert approval.kind == "spawn"
    assert approval.ref == "refs/heads/spawn/scout"
    assert PlanStep("scout", Action.CREATE) in approval.plan
    await swarm.hive.approvals.approve(approval.id)
    await wait_for(lambda: swarm.turn_state("scout") == "idle", timeout=30)
    spec = await swarm.hive.git.applied_agent("scout")
    assert spec is not None and spec.spec is not None
    assert spec.spec.description == "looks around"


async def test_ask_operator_answer_and_expiry_reach_the_managers_inbox(swarm: Swarm) -> None:
    swarm.api.script(
        tool_use(
            "mcp__hive__ask_operator",
            {"question": "ship it?", "options": ["yes", "no"]},
            when=woke("hm1nd"),
        ),
        text("waiting for the operator", when=after_tool("hm1nd")),
        text(
            "noted: yes",
            when=lambda r: (
                "operator resolved" in r.last_user_text and "answered" in r.last_user_text
            ),
        ),
    )
    async with admin(swarm.hive) as client:
        await client.call("send", to="hm1nd", body="decide on shipping")
        (question,) = await wait_for(lambda: swarm.hive.questions.query(), timeout=60)
        assert question.options == ("yes", "no")
        with pytest.raises(ProtocolError, match="choose one of"):
            await client.call("answer", id=question.id, answer="maybe")
        answered = await client.call("answer", id=question.id, answer="yes")
        assert answered["status"] == "answered"
    with anyio.fail_after(60):
        seen = await swarm.api.wait_for(lambda r: "operator resolved" in r.last_user_text)
    assert '"answer": "yes"' in seen.last_user_text
    # Expiry: a question with a 1 s TTL resolves itself and tells the manager.
    asked = await swarm.hive.questions.ask("hm1nd", "quick?", ttl_seconds=1)
    swarm.api.script(text("expired, fine", when=lambda r: "expired" in r.last_user_text))
    await wait_for(lambda: _status(swarm, asked.id, "expired"), timeout=10)

    async def told() -> list[str]:
        rows = await swarm.hive.broker.messages("hm1nd")
        return sorted(json.loads(r.body)["status"] for r in rows if r.kind == "operator_answered")

    async def told_both() -> bool:
        return len(await told()) >= 2

    # The manager is told just after the status changes: wait for the message too.
    await wait_for(told_both, timeout=10)
    assert await told() == ["answered", "expired"]


async def _status(swarm: Swarm, question_id: int, status: str) -> bool:
    question = await swarm.hive.questions.get(question_id)
    return question.status == status
