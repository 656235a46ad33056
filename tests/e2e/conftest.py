"""A whole hive with real harness processes and the real claude CLI on the fake API."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.hive import Hive
from harness.claude import ClaudeMissingError, find_claude
from tests.fakes.anthropic import FakeAnthropic, claude_env, open_fake_anthropic
from tests.helpers import Clone, hive_settings, running_hive, wait_for


@dataclass
class Swarm:
    hive: Hive
    api: FakeAnthropic
    root: Path

    def clone(self, name: str = "clone") -> Clone:
        return Clone(self.root / name, self.hive.git.proposed_path)

    async def apply(self, *agents: str) -> None:
        clone = self.clone(f"c{len(list(self.root.iterdir()))}")
        for name in agents:
            clone.add_agent(name)
        clone.commit_push("agents " + " ".join(agents))
        approval = (await wait_for(lambda: self.hive.approvals.query("pending")))[0]
        await self.hive.approvals.approve(approval.id)
        for name in agents:
            await self.wait_idle(name)

    async def wait_idle(self, name: str) -> None:
        await wait_for(lambda: self.turn_state(name) == "idle", timeout=30)

    def turn_state(self, name: str) -> str | None:
        turn: dict[str, Any] | None = self.hive.turns.get(name)
        return None if turn is None else str(turn["state"])


def swarm_environ(api: FakeAnthropic, root: Path) -> dict[str, str]:
    """hive-c0re's environment for a swarm on the fake API: what it passes on to agents."""
    try:
        claude = find_claude()
    except ClaudeMissingError as exc:
        pytest.fail(f"{exc}; the test command installs @anthropic-ai/claude-code")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env.update(claude_env(api.url, str(root / "unused")))
    env.update({"HIVE_CLAUDE_BIN": claude, "HIVE_RETRY_BASE": "0.2"})
    return env


@pytest.fixture
async def swarm(short_dir: Path) -> AsyncIterator[Swarm]:
    async with open_fake_anthropic() as api:
        env = swarm_environ(api, short_dir)
        settings = hive_settings(short_dir, harness_command=(), environ=env)
        async with running_hive(settings) as hive:
            swarm = Swarm(hive, api, short_dir)
            await wait_for(lambda: swarm.turn_state("hm1nd") == "idle", timeout=30)
            yield swarm
