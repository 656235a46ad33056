"""The agent page in a real browser, served by a real harness running the real claude."""

from __future__ import annotations

import functools
import json
import stat
from typing import Any

import pytest
from playwright.async_api import Page, expect

from harness.history import open_history
from tests.fakes.anthropic import hang, text, tool_use
from tests.helpers import wait_for
from tests.ui.conftest import DOCS, UiSwarm

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]


def woke(name: str) -> Any:
    return lambda r: f"You are {name}," in r.last_user_text


async def open_page(page: Page, name: str, swarm: UiSwarm) -> None:
    """The agent's page, behind the dashboard at /agents/<name>/."""

    async def up() -> bool:
        response = await page.goto(f"{swarm.dashboard}/agents/{name}/")
        return response is not None and response.ok  # 502 until the harness serves

    await wait_for(up, timeout=20, interval=0.2)
    await expect(page.get_by_test_id("state-badge")).to_have_text("idle", timeout=20_000)


async def test_send_a_prompt_and_watch_the_streamed_turn(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("alice")
    swarm.api.script(
        tool_use(
            "mcp__hive__send", {"to": "hm1nd", "body": "operator says hi"}, when=woke("alice")
        ),
        text("Told the manager. Streaming works.", when=lambda r: bool(r.tool_results)),
        text("noted", when=woke("hm1nd")),
    )
    await open_page(page, "alice", swarm)
    prompt = page.get_by_test_id("prompt")
    await prompt.fill("please greet the manager")
    await prompt.press("Enter")
    tail = page.get_by_test_id("tail")
    await expect(tail).to_contain_text("woke on")
    await expect(tail).to_contain_text("hive.send")
    await expect(tail).to_contain_text("operator says hi")
    await expect(tail).to_contain_text("Told the manager. Streaming works.", timeout=30_000)
    await expect(page.get_by_test_id("state-badge")).to_have_text("idle", timeout=20_000)
    await expect(page.get_by_test_id("turn-chip")).to_contain_text("last turn ok")
    DOCS.mkdir(exist_ok=True)
    await page.get_by_test_id("prompt").fill("/model claude-sonnet-4-5")
    await page.wait_for_timeout(300)
    await page.screenshot(path=str(DOCS / "agent-page.png"))
    await page.get_by_test_id("prompt").fill("")
    # Reloading backfills the same turn from the history.
    await page.reload()
    await expect(page.get_by_test_id("tail")).to_contain_text("Streaming works.")
    (sent,) = [m for m in await swarm.hive.broker.messages("alice") if m.sender == "operator"]
    assert sent.body == "please greet the manager"


async def test_cancel_a_turn_from_the_page(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("alice")
    swarm.api.script(hang(when=woke("alice")))
    await open_page(page, "alice", swarm)
    await page.get_by_test_id("prompt").fill("take forever")
    await page.get_by_test_id("send").click()
    await expect(page.get_by_test_id("state-badge")).to_have_text("thinking", timeout=30_000)
    await expect(page.get_by_test_id("inbox")).to_contain_text("take forever")
    await page.get_by_test_id("cancel-turn").click()
    await expect(page.get_by_test_id("state-badge")).to_have_text("idle", timeout=15_000)
    await expect(page.get_by_test_id("turn-chip")).to_contain_text("cancelled")
    await expect(page.get_by_test_id("cancel-turn")).to_be_hidden()


async def test_model_and_help_slash_commands(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("alice")
    swarm.api.script(text("on the new model", when=woke("alice")))
    await open_page(page, "alice", swarm)
    prompt = page.get_by_test_id("prompt")
    await prompt.fill("/model claude-test-model")
    await prompt.press("Enter")
    await expect(page.get_by_test_id("model-chip")).to_have_text("claude-test-model")
    await prompt.fill("/help")
    await prompt.press("Enter")
    await expect(page.get_by_test_id("tail")).to_contain_text("/compact")
    await prompt.fill("/nonsense")
    await prompt.press("Enter")
    await expect(page.get_by_test_id("tail")).to_contain_text("unknown command /nonsense")
    await prompt.fill("now answer")
    await prompt.press("Enter")
    await expect(page.get_by_test_id("tail")).to_contain_text("on the new model", timeout=30_000)
    used = [r.body.get("model") for r in swarm.api.main_requests if r.body and woke("alice")(r)]
    assert used[-1] == "claude-test-model"


async def test_new_events_while_scrolled_up_show_the_pill(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("alice")
    swarm.api.script(text("line one\nline two\nline three", when=woke("alice")))
    await page.set_viewport_size({"width": 1000, "height": 600})
    await open_page(page, "alice", swarm)
    prompt = page.get_by_test_id("prompt")
    for _ in range(4):
        await prompt.fill("/help")
        await prompt.press("Enter")
    tail = page.get_by_test_id("tail")
    await wait_for(lambda: tail.evaluate("t => t.scrollHeight > t.clientHeight + 100"))
    await tail.evaluate("t => { t.scrollTop = 0; t.dispatchEvent(new Event('scroll')); }")
    await prompt.fill("talk to me")
    await prompt.press("Enter")
    pill = page.get_by_test_id("newpill")
    await expect(pill).to_be_visible(timeout=30_000)
    await expect(pill).to_contain_text("new")
    assert int(await page.locator("#newcount").inner_text()) >= 1
    assert await tail.evaluate("t => t.scrollTop") == 0  # it did not yank us down
    await pill.click()
    await expect(pill).to_be_hidden()
    assert await tail.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight < 24")


async def test_login_stores_credentials_and_never_shows_them(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("alice")
    await open_page(page, "alice", swarm)
    await page.goto(f"{swarm.dashboard}/agents/alice/login")
    await expect(page.get_by_test_id("cred-status")).to_contain_text("no credentials")
    secret = "sk-ant-api03-very-secret-key"
    await page.get_by_test_id("secret").fill(secret)
    await page.get_by_test_id("store").click()
    await expect(page.get_by_test_id("cred-status")).to_contain_text("API key")
    assert secret not in await page.content()
    config = swarm.hive.layout.claude_dir("alice")
    key_file = config / "hyperhive-api-key"
    assert key_file.read_text().strip() == secret
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    settings = json.loads((config / "settings.json").read_text())
    assert settings["apiKeyHelper"].startswith("cat ")


async def test_a_reload_backfills_woke_on_lines_and_loads_older_events(
    swarm: UiSwarm, page: Page
) -> None:
    await swarm.apply("alice")
    # 400 older events in the agent's own history (its real sqlite file), then two turns.
    async with await open_history(swarm.hive.layout.notes_dir("alice")) as history:
        turn = await history.start_turn(None)
        await history.append_many(
            turn, [{"type": "raw", "text": f"filler {i}"} for i in range(400)]
        )
    swarm.api.script(
        text("first answer", when=lambda r: "first question" in r.last_user_text),
        text("second answer", when=lambda r: "second question" in r.last_user_text),
    )
    for body in ("first question", "second question"):
        sent = await swarm.hive.broker.send("operator", "alice", body)
        await wait_for(functools.partial(_acked, swarm, sent.id), timeout=30)
    await open_page(page, "alice", swarm)
    tail = page.get_by_test_id("tail")
    first = [m for m in await swarm.hive.broker.messages("alice") if m.body == "first question"]
    await expect(tail).to_contain_text(f"woke on #{first[0].id} from operator: first question")
    await expect(tail).to_contain_text("woke on")
    assert await tail.locator(".ev.wake").count() == 2  # backfilled, each once
    await expect(tail).not_to_contain_text("filler 0")
    older = page.get_by_test_id("load-older")
    await expect(older).to_be_visible()
    await older.click()
    await expect(tail).to_contain_text("filler 0")
    await expect(older).to_be_hidden()  # nothing older left
    assert await tail.locator(".ev", has_text="filler 99").count() == 1


async def _acked(swarm: UiSwarm, message_id: int) -> bool:
    found = [m for m in await swarm.hive.broker.messages("alice") if m.id == message_id]
    return bool(found and found[0].acked_at)
