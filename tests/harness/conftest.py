"""Shared pieces for harness tests: the real claude binary, the fake API, short temp dirs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.claude import ClaudeMissingError, ClaudeSettings, find_claude
from tests.fakes.anthropic import FakeAnthropic, claude_env, open_fake_anthropic

REPO = Path(__file__).resolve().parents[2]
# How claude launches our MCP server in tests: the module, importable from the repo.
MCP_COMMAND = (sys.executable, "-m", "harness.mcp_server")


@pytest.fixture
def claude_bin() -> str:
    """The real claude CLI; its absence fails the test instead of skipping it."""
    try:
        return find_claude()
    except ClaudeMissingError as exc:
        pytest.fail(f"{exc}; install @anthropic-ai/claude-code and set HIVE_CLAUDE_BIN")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir short enough for AF_UNIX paths and claude's per-cwd project dirs."""
    path = tempfile.mkdtemp(dir="/tmp", prefix="hh")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAnthropic]:
    async with open_fake_anthropic() as fake:
        yield fake


def settings_for(claude: str, fake: FakeAnthropic, tmp: Path, **overrides: Any) -> ClaudeSettings:
    config_dir = tmp / "claude-config"
    config_dir.mkdir(exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = claude_env(fake.url, str(config_dir), {"PYTHONPATH": pythonpath})
    base = ClaudeSettings(
        binary=claude,
        env=env,
        interrupt_grace=1.0,
        term_grace=1.0,
        drain_grace=0.2,
    )
    return dataclasses.replace(base, **overrides)
