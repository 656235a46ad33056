"""Harness controls with an in-process harness on a real hive: model override, clear,
a missing claude (offline, messages wait), and the manager's push-then-request flow."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from controller.protocol import connect_client
from harness.agent import Agent, AgentConfig
from tests.e2e.conftest import Swarm
from tests.fakes.anthropic import SeenRequest, text
from tests.helpers import admin, git, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@asynccontextmanager
async def inprocess(
    swarm: Swarm, name: str, *, warm_idle: float = 300.0, **claude: Any
) -> AsyncIterator[Agent]:
    """Run `name`'s harness in this process (its process is held stopped)."""
    async with admin(swarm.hive) as client:
        await client.call("kill", name=name)
    env = dict(swarm.hive.settings.environ)
    env.update(
        {
            "HIVE_AGENT": name,
            "HIVE_SOCKET": str(swarm.hive.layout.socket(name)),
            "HIVE_STATE": str(swarm.hive.layout.notes_dir(name)),
            "HIVE_RETRY_BASE": "0.1",
        }
    )
    config = AgentConfig.from_env(env)
    config = dataclasses.replace(
        config,
        warm_idle=warm_idle,
        # The key hive-c0re minted for the (killed) harness this one stands in for.
        key=swarm.hive.layout.harness_key(name).read_text(),
        claude=dataclasses.replace(
            config.claude,
            env={**env, "CLAUDE_CONFIG_DIR": str(swarm.hive.layout.claude_dir(name))},
            **claude,
        ),
    )
    agent = Agent(config)
    async with anyio.create_task_group() as tg:
        await tg.start(agent.serve)
        await wait_for(lambda: agent.state == "idle")
        yield agent
        tg.cancel_scope.cancel()


def woke(name: str) -> Callable[[SeenRequest], bool]:
    return lambda r: f"You are {name}," in r.last_user_text


async def test_model_override_and_clear_shape_the_next_turns(swarm: Swarm) -> None:
    await swarm.apply("alice")
    async with inprocess(swarm, "alice") as agent:
        agent.set_model("claude-test-override")
        assert (
            swarm.hive.layout.notes_dir("alice") / "hyperhive-model"
        ).read_text().strip() == "claude-test-override"
        swarm.api.script(
            text("one", when=woke("alice")),
            text("two", when=woke("alice")),
            text("three", when=woke("alice")),
        )
        async with admin(swarm.hive) as client:
            for body in ("first", "second"):
                await client.call("send", to="alice", body=body)
                await wait_for(functools.partial(_seen, swarm, body), timeout=60)
                await wait_for(lambda: agent.state == "idle", timeout=30)
            agent.clear()
            await client.call("send", to="alice", body="third")
            await wait_for(lambda: _seen(swarm, "third"), timeout=60)
        first, second, third = [r for r in swarm.api.main_requests if r.mentions("You are alice")]
        assert first.body is not None and first.body["model"] == "claude-test-override"
        # The second turn continues the conversation; after clear the third starts afresh.
        assert second.mentions("first") and second.mentions("second")
        assert third.mentions("third") and not third.mentions("second")


def _seen(swarm: Swarm, body: str) -> bool:
    return any(f"\n\n{body}\n\n" in r.last_user_text for r in swarm.api.main_requests)


async def test_a_missing_claude_is_offline_with_the_reason_and_messages_wait(swarm: Swarm) -> None:
    await swarm.apply("alice")
    async with inprocess(swarm, "alice", binary="/nonexistent/claude") as agent:
        async with admin(swarm.hive) as client:
            await client.call("send", to="alice", body="are you there?")
        await wait_for(lambda: agent.state == "offline")
        assert "not found" in agent.reason
        turn = swarm.hive.turns["alice"]
        assert turn["state"] == "offline" and "not found" in turn["reason"]
        async with admin(swarm.hive) as client:
            rows = {r["name"]: r for r in await client.call("agents")}
        assert rows["alice"]["turn"] == "offline"
        assert "not found" in rows["alice"]["turn_reason"]
        (waiting,) = await swarm.hive.broker.inbox("alice")
        assert waiting.body == "are you there?" and waiting.acked_at is None
        # claude comes back: the message that waited gets its turn.
        agent.settings = dataclasses.replace(agent.settings, binary=None)
        swarm.api.script(text("yes", when=woke("alice")))
        await wait_for(lambda: _no_inbox(swarm), timeout=60)


async def _no_inbox(swarm: Swarm) -> bool:
    return await swarm.hive.broker.inbox("alice") == []


async def test_the_manager_pushes_from_its_clone_and_requests_the_apply(swarm: Swarm) -> None:
    clone = swarm.hive.layout.agents_clone()
    git(clone, "config", "user.name", "hm1nd")
    git(clone, "config", "user.email", "hm1nd@hive")
    git(clone, "pull", "-q", "origin", "main")
    (clone / "agents" / "scribe").mkdir(parents=True)
    (clone / "agents" / "scribe" / "agent.toml").write_text('description = "takes notes"\n')
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "add scribe")
    sha = git(clone, "rev-parse", "HEAD")
    git(clone, "push", "-q", "origin", "HEAD:manager/scribe")
    manager = await connect_client(swarm.hive.layout.socket("hm1nd"))
    async with manager:
        approval = await manager.call(
            "request_apply_commit", sha=sha, note="a note-taker for the team"
        )
    assert approval["sha"] == sha
    assert approval["ref"] == "refs/heads/manager/scribe"
    assert approval["note"] == "a note-taker for the team"
    assert {"agent": "scribe", "action": "create"} in approval["plan"]
    assert len(await swarm.hive.approvals.query("pending")) == 1
