"""Browser fixtures: Debian's chromium through Playwright, and a hive with its dashboard.

The hive runs real harness processes with the real claude CLI on the scripted fake API
(as in tests/e2e), with the dashboard on a free port; each agent's page is served
through it at `/agents/<name>/`, as in production.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.e2e.conftest import Swarm, swarm_environ
from tests.fakes.anthropic import open_fake_anthropic
from tests.helpers import hive_settings, running_hive, wait_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO = Path(__file__).resolve().parents[2]
# Screenshots go into docs/ (shown in the README) only when asked for; otherwise a test
# run would rewrite tracked files.
DOCS = (
    REPO / "docs"
    if os.environ.get("HIVE_UPDATE_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="hive-shots-"))
)
# The harness from *this* checkout (an installed `hive-ag3nt` may point at another one).
HARNESS = (
    sys.executable,
    "-c",
    f"import sys; sys.path.insert(0, {str(REPO)!r}); "
    "from hyperhive.harness import main_agent; main_agent(['serve'])",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


class UiSwarm(Swarm):
    @property
    def dashboard(self) -> str:
        assert self.hive.dashboard_port is not None
        return f"http://127.0.0.1:{self.hive.dashboard_port}"


@pytest.fixture
async def swarm(short_dir: Path) -> AsyncIterator[UiSwarm]:
    async with open_fake_anthropic() as api:
        env = swarm_environ(api, short_dir)
        settings = hive_settings(
            short_dir,
            harness_command=HARNESS,
            environ=env,
            dashboard_enabled=True,
            dashboard="127.0.0.1:0",
        )
        async with running_hive(settings) as hive:
            swarm = UiSwarm(hive, api, short_dir)
            await wait_for(lambda: swarm.turn_state("hm1nd") == "idle", timeout=30)
            yield swarm
