"""Live sessions end to end: an in-process harness on a real hive, the real claude CLI on
the fake API. A tool outside allowed_tools asks the operator within the turn; /compact
no longer swallows the message after it; /model switches a warm session; the
conversation outlives the harness and the idle window."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from harness.tools import HiveTools
from tests.e2e.conftest import Swarm
from tests.e2e.test_controls import inprocess, woke
from tests.e2e.test_talk import after_tool, turns_of
from tests.fakes.anthropic import SeenRequest, text, tool_use
from tests.helpers import admin, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def _with(body: str) -> Any:
    return lambda r: f"\n\n{body}\n\n" in r.last_user_text


async def _pending_question(swarm: Swarm) -> dict[str, Any]:
    async with admin(swarm.hive) as client:
        (question,) = await wait_for(lambda: client.call("questions"), timeout=60)
    return dict(question)


async def test_a_tool_outside_allowed_tools_runs_in_the_same_turn_once_the_operator_allows(
    swarm: Swarm,
) -> None:
    await swarm.apply("alice")
    marker = swarm.hive.layout.notes_dir("alice") / "pushed"
    command = f"touch {marker}"
    swarm.api.script(
        tool_use("Bash", {"command": command}, when=woke("alice")),
        text("pushed it", when=after_tool("alice")),
    )
    async with inprocess(swarm, "alice") as agent:
        async with admin(swarm.hive) as client:
            await client.call("send", to="alice", body="push it")
            question = await _pending_question(swarm)
            assert question["asker"] == "alice"
            assert question["question"] == f"alice wants Bash: `{command}`"
            assert question["options"] == ["allow once", "deny"]
            assert question["expires_at"] is not None
            assert agent.state == "thinking" and not marker.exists()
            await client.call("answer", id=question["id"], answer="allow once")
        await wait_for(lambda: agent.state == "idle" and marker.exists(), timeout=60)
    (turn,) = await turns_of(swarm, "alice")
    assert turn.status == "ok"
    result = next(r for r in swarm.api.main_requests if after_tool("alice")(r))
    assert not result.tool_results[0].get("is_error")
    # The answer went to the waiting turn, not to alice's inbox as a new message.
    assert [m.body for m in await swarm.hive.broker.messages("alice")] == ["push it"]


async def test_compact_then_a_message_handles_the_message(swarm: Swarm) -> None:
    await swarm.apply("alice")
    swarm.api.script(
        text("noted", when=_with("first")),
        text("handled after compaction", when=_with("second")),
    )
    async with inprocess(swarm, "alice") as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="first")
        await wait_for(lambda: agent.state == "idle" and agent.last_turn is not None)
        agent.compact()
        await client.call("send", to="alice", body="second")
        with anyio.fail_after(60):
            await swarm.api.wait_for(_with("second"))
        await wait_for(lambda: _acked_all(swarm), timeout=30)
    assert not swarm.api.pending  # both scripted replies were asked for
    turns = await turns_of(swarm, "alice")
    assert [t.status for t in turns] == ["ok", "ok"]


async def _acked_all(swarm: Swarm) -> bool:
    return await swarm.hive.broker.inbox("alice") == []


async def test_model_switches_the_warm_session_without_a_restart(swarm: Swarm) -> None:
    await swarm.apply("alice")
    swarm.api.script(text("one", when=woke("alice")), text("two", when=woke("alice")))
    async with inprocess(swarm, "alice") as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="first")
        await wait_for(lambda: _seen(swarm, "first") and agent.state == "idle", timeout=60)
        session = agent.warm.session
        assert session is not None
        agent.set_model("claude-switched")
        await client.call("send", to="alice", body="second")
        await wait_for(lambda: _seen(swarm, "second") and agent.state == "idle", timeout=60)
        assert agent.warm.session is session and session.alive
    first, second = [r for r in swarm.api.main_requests if woke("alice")(r)]
    assert (second.body or {})["model"] == "claude-switched"
    assert (first.body or {})["model"] != "claude-switched"


def _seen(swarm: Swarm, body: str) -> bool:
    return any(_with(body)(r) for r in swarm.api.main_requests)


async def test_the_conversation_resumes_after_a_harness_restart_and_after_going_cold(
    swarm: Swarm,
) -> None:
    await swarm.apply("alice")
    swarm.api.script(*(text(f"reply {i}", when=woke("alice")) for i in range(3)))
    async with inprocess(swarm, "alice") as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="remember kumquat")
        await wait_for(lambda: _seen(swarm, "remember kumquat") and agent.state == "idle")
    # A new harness (the old one is gone with its claude) resumes the recorded session.
    async with inprocess(swarm, "alice", warm_idle=0.2) as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="what fruit?")
        await wait_for(lambda: _seen(swarm, "what fruit?") and agent.state == "idle")
        await wait_for(lambda: agent.warm.session is None, timeout=10)  # went cold
        await client.call("send", to="alice", body="and again?")
        await wait_for(lambda: _seen(swarm, "and again?") and agent.state == "idle")
    wakes: list[SeenRequest] = [r for r in swarm.api.main_requests if woke("alice")(r)]
    assert len(wakes) == 3
    assert "remember kumquat" in json.dumps(wakes[1].messages)
    assert "remember kumquat" in json.dumps(wakes[2].messages)
    assert "what fruit?" in json.dumps(wakes[2].messages)


async def test_over_the_hosts_warm_cap_the_least_recently_used_session_goes_cold(
    swarm: Swarm,
) -> None:
    await swarm.apply("alice", "bob")
    swarm.hive.warm.cap = 1
    swarm.api.script(*(text("ok", when=woke(n)) for n in ("alice", "bob", "alice")))
    async with (
        inprocess(swarm, "alice") as alice,
        inprocess(swarm, "bob") as bob,
        admin(swarm.hive) as client,
    ):
        await client.call("send", to="alice", body="one")
        await wait_for(lambda: _seen(swarm, "one") and alice.state == "idle", timeout=60)
        assert alice.warm.warm
        await client.call("send", to="bob", body="two")
        await wait_for(lambda: _seen(swarm, "two") and bob.state == "idle", timeout=60)
        await wait_for(lambda: alice.warm.session is None, timeout=30)
        assert bob.warm.warm and swarm.hive.warm.warm == ["bob"]
        assert "warm sessions" in alice.warm.cold_reason
        # alice's next message starts her session again (and bob's goes cold).
        await client.call("send", to="alice", body="three")
        await wait_for(lambda: _seen(swarm, "three") and alice.state == "idle", timeout=60)
        await wait_for(lambda: bob.warm.session is None, timeout=30)
    wakes = [r for r in swarm.api.main_requests if woke("alice")(r)]
    assert "one" in json.dumps(wakes[-1].messages)  # resumed, not a new conversation


async def test_the_hive_tools_cannot_use_the_harness_only_commands(swarm: Swarm) -> None:
    await swarm.apply("alice")
    tools = HiveTools("alice", str(swarm.hive.layout.socket("alice")))
    try:
        for cmd, args in (
            ("turn_state", {"state": "idle"}),
            ("recv", {"lease": True}),
            ("ask_permission", {"tool": "Bash"}),
            ("warm", {}),
        ):
            with pytest.raises(ToolError, match="forbidden"):
                await tools.link.call(cmd, **args)
        # What the model may call works on the same connection, as alice.
        sent = await tools.handle(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "send", "arguments": {"to": "operator", "body": "hi"}},
            }
        )
    finally:
        await tools.aclose()
    assert sent is not None and not sent["result"].get("isError"), sent
    (message,) = [m for m in await swarm.hive.broker.messages("alice") if m.body == "hi"]
    assert message.sender == "alice"


async def test_a_recorded_session_claude_no_longer_has_starts_a_new_conversation(
    swarm: Swarm,
) -> None:
    await swarm.apply("alice")
    notes = swarm.hive.layout.notes_dir("alice")
    (notes / "hyperhive-session").write_text("6f2b68e4-8a4b-4319-8588-64268a03bc2a\n")
    swarm.api.script(text("fresh start", when=woke("alice")))
    async with inprocess(swarm, "alice") as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="hello again")
        await wait_for(lambda: _acked_all(swarm), timeout=60)
        assert agent.state == "idle"
    (turn,) = await turns_of(swarm, "alice")
    assert turn.status == "ok"
    recorded = (notes / "hyperhive-session").read_text().strip()
    assert recorded and recorded != "6f2b68e4-8a4b-4319-8588-64268a03bc2a"


async def test_cancelling_a_turn_that_waits_for_a_permission_withdraws_the_question(
    swarm: Swarm,
) -> None:
    await swarm.apply("alice")
    marker = swarm.hive.layout.notes_dir("alice") / "never"
    swarm.api.script(tool_use("Bash", {"command": f"touch {marker}"}, when=woke("alice")))
    async with inprocess(swarm, "alice") as agent, admin(swarm.hive) as client:
        await client.call("send", to="alice", body="do it")
        question = await _pending_question(swarm)
        assert agent.cancel()
        await wait_for(lambda: _acked_all(swarm), timeout=30)

        async def withdrawn() -> bool:
            return (await swarm.hive.questions.get(question["id"])).status == "cancelled"

        await wait_for(withdrawn, timeout=10)
    (turn,) = await turns_of(swarm, "alice")
    assert turn.status == "cancelled" and not marker.exists()
