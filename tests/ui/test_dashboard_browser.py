"""The dashboard in a real browser against a real hive with real agents."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from controller.values import Approval
from tests.fakes.anthropic import text
from tests.helpers import wait_for
from tests.ui.conftest import DOCS, UiSwarm

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]


def woke(name: str) -> Any:
    return lambda r: f"You are {name}," in r.last_user_text


async def _propose(swarm: UiSwarm, name: str, branch: str) -> Approval:
    clone = swarm.clone(f"p-{branch.replace('/', '-')}")
    clone.checkout(branch)
    clone.add_agent(name, f"{name} does things")
    clone.write(f"agents/{name}/prompt.md", f"You are {name}.\nBe brief.\n")
    clone.commit_push(f"add {name}\n\nso that {name} can help", branch)

    async def pending() -> list[Approval]:
        return [a for a in await swarm.hive.approvals.query("pending") if a.ref.endswith(branch)]

    (approval,) = await wait_for(pending, timeout=20)
    found: Approval = approval
    return found


async def test_approve_from_the_dashboard_runs_the_agent(swarm: UiSwarm, page: Page) -> None:
    await page.goto(swarm.dashboard)
    approval = await _propose(swarm, "alice", "feature/alice")
    card = page.get_by_test_id(f"approval-{approval.id}")
    await expect(card).to_be_visible(timeout=10_000)  # arrived live, no reload
    await expect(card.locator(".plan")).to_contain_text("create alice")
    await expect(card.locator(".l.add").first).to_contain_text("description")
    await expect(card).to_contain_text("so that alice can help")
    approve = page.get_by_test_id(f"approve-{approval.id}")
    await approve.click()  # arms it: a second click approves
    await expect(approve).to_contain_text(f"confirm: merge #{approval.id}")
    assert (await swarm.hive.approvals.get(approval.id)).status == "pending"
    await approve.click()

    async def approved() -> Approval | None:
        found = await swarm.hive.approvals.get(approval.id)
        return found if found.status == "approved" else None

    decided = await wait_for(approved)
    toast = page.get_by_test_id("toast").filter(has_text=f"#{approval.id}")
    await expect(toast).to_contain_text(decided.applied_sha[:12])
    await expect(page.get_by_test_id(f"applied-{approval.id}")).to_have_text(
        decided.applied_sha[:12]
    )
    await expect(card).to_be_hidden()
    await wait_for(lambda: swarm.turn_state("alice") == "idle", timeout=30)
    await expect(page.get_by_test_id("turn-alice")).to_have_text("idle", timeout=10_000)
    await expect(page.get_by_test_id("agent-alice")).to_contain_text("running")
    assert (await swarm.hive.git.applied_head()) == decided.applied_sha


async def test_deny_with_a_reason(swarm: UiSwarm, page: Page) -> None:
    approval = await _propose(swarm, "mallory", "feature/mallory")
    await page.goto(swarm.dashboard)
    await page.get_by_test_id(f"deny-reason-{approval.id}").fill("no mallory here")
    await page.get_by_test_id(f"deny-{approval.id}").click()
    await expect(page.get_by_test_id(f"deny-{approval.id}")).to_contain_text("confirm: deny")
    await page.get_by_test_id(f"deny-{approval.id}").click()
    row = page.get_by_test_id(f"history-{approval.id}")
    await expect(row).to_contain_text("denied")
    await expect(row).to_contain_text("no mallory here")
    denied = await swarm.hive.approvals.get(approval.id)
    assert (denied.status, denied.reason) == ("denied", "no mallory here")
    assert (await swarm.hive.git.applied_agent("mallory")) is None


async def test_answer_a_question_and_cancel_another(swarm: UiSwarm, page: Page) -> None:
    swarm.api.script(
        text("thanks", when=lambda r: "operator resolved" in r.last_user_text),
        text("thanks", when=lambda r: "operator resolved" in r.last_user_text),
    )
    await page.goto(swarm.dashboard)
    radio = await swarm.hive.questions.ask("hm1nd", "ship it?", ["yes", "no"], ttl_seconds=600)
    free = await swarm.hive.questions.ask("hm1nd", "name the release")
    card = page.get_by_test_id(f"question-{radio.id}")
    await expect(card.locator(".ttl")).to_contain_text("ttl 9m")
    await expect(page.get_by_test_id("notify-questions")).to_contain_text("2 questions")
    await card.get_by_label("no").check()
    await page.get_by_test_id(f"answer-{radio.id}").click()
    await expect(page.get_by_test_id(f"resolved-{radio.id}")).to_contain_text("no")
    await page.get_by_test_id(f"cancel-q-{free.id}").click()
    await expect(page.get_by_test_id(f"resolved-{free.id}")).to_contain_text("cancelled")
    inbox = await swarm.hive.broker.messages("hm1nd")
    outcomes = {json.loads(m.body)["status"] for m in inbox if m.kind == "operator_answered"}
    assert outcomes == {"answered", "cancelled"}
    assert (await swarm.hive.questions.get(radio.id)).answer == "no"


async def test_answer_a_checkbox_question_with_several_choices(swarm: UiSwarm, page: Page) -> None:
    swarm.api.script(text("noted", when=lambda r: "operator resolved" in r.last_user_text))
    await page.goto(swarm.dashboard)
    asked = await swarm.hive.questions.ask(
        "hm1nd", "which regions?", ["eu", "us", "apac"], multi=True
    )
    card = page.get_by_test_id(f"question-{asked.id}")
    await card.get_by_label("eu").check()
    await card.get_by_label("apac").check()
    await page.get_by_test_id(f"answer-{asked.id}").click()
    await expect(page.get_by_test_id(f"resolved-{asked.id}")).to_contain_text("apac")
    answered = await swarm.hive.questions.get(asked.id)
    assert (answered.status, answered.answer) == ("answered", ("eu", "apac"))
    (told,) = [
        json.loads(m.body)
        for m in await swarm.hive.broker.messages("hm1nd")
        if m.kind == "operator_answered"
    ]
    assert told["answer"] == ["eu", "apac"]


async def test_live_update_keeps_typed_input_and_focus(swarm: UiSwarm, page: Page) -> None:
    first = await _propose(swarm, "carol", "feature/carol")
    await page.goto(swarm.dashboard)
    await page.evaluate("window.__same_page = 42")
    reason = page.get_by_test_id(f"deny-reason-{first.id}")
    await reason.click()
    await reason.press_sequentially("half-typed reas")
    second = await _propose(swarm, "dave", "feature/dave")
    await expect(page.get_by_test_id(f"approval-{second.id}")).to_be_visible()
    await swarm.hive.broker.send("operator", "hm1nd", "a message to redraw the flow")
    await expect(page.locator(".flow")).to_contain_text("a message to redraw the flow")
    assert await page.evaluate("window.__same_page") == 42  # never reloaded
    await expect(reason).to_have_value("half-typed reas")
    await expect(reason).to_be_focused()
    await page.keyboard.type("on")
    await expect(reason).to_have_value("half-typed reason")


async def test_cross_origin_post_is_refused(swarm: UiSwarm, page: Page) -> None:
    approval = await _propose(swarm, "erin", "feature/erin")
    await page.goto(swarm.dashboard)  # the browser holds the dashboard's CSRF cookie
    url = f"{swarm.dashboard}/api/approvals/{approval.id}/approve"
    await page.goto(swarm.api.url + "/evil")  # another origin (the fake API's port)
    await page.evaluate(
        "url => fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include',"
        " headers: {'content-type': 'text/plain'}, body: '{}'}).catch(() => null)",
        url,
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers={"origin": "http://evil.example"}) as resp:
            assert resp.status == 403
            assert "cross-origin" in (await resp.json())["error"]
        async with http.post(url, headers={"origin": swarm.dashboard}) as resp:
            assert resp.status == 403  # same origin but no token
            assert "CSRF" in (await resp.json())["error"]
    assert (await swarm.hive.approvals.get(approval.id)).status == "pending"


async def test_agent_actions_reconcile_page_and_logs(swarm: UiSwarm, page: Page) -> None:
    await swarm.apply("bob")
    await page.goto(swarm.dashboard)
    await page.get_by_test_id("stop-bob").click()
    await expect(page.get_by_test_id("agent-bob")).to_contain_text("stop by operator")
    await page.get_by_test_id("start-bob").click()
    await wait_for(lambda: swarm.turn_state("bob") == "idle", timeout=30)
    await expect(page.get_by_test_id("agent-bob")).not_to_contain_text("stop by operator")
    await page.get_by_test_id("rebuild-bob").click()
    await expect(page.get_by_test_id("agent-bob").locator(".result")).to_contain_text("done")
    await page.goto(swarm.dashboard + "/reconcile")
    await expect(page.get_by_test_id("applied-head")).to_have_text(
        await swarm.hive.git.applied_head()
    )
    recon = page.get_by_test_id("recon-bob")
    await expect(recon).to_contain_text("Ready=True")
    await expect(recon.locator(".timeline .run").first).to_be_visible()
    await page.goto(swarm.dashboard + "/logs?agent=bob")
    await expect(page.get_by_test_id("logview")).to_contain_text("bob", timeout=10_000)


async def test_screenshot_of_the_dashboard(swarm: UiSwarm, page: Page) -> None:
    swarm.api.script(text("on it", when=woke("alice")))
    await swarm.apply("alice")
    await swarm.hive.broker.send("operator", "alice", "say hi to the manager")
    await swarm.hive.broker.send("alice", "hm1nd", "hi manager, alice here")
    await swarm.hive.broker.send("hm1nd", "alice", "welcome, alice")
    await _propose(swarm, "scout", "spawn/scout")
    await swarm.hive.questions.ask(
        "hm1nd", "Which region should scout watch first?", ["eu", "us", "apac"], ttl_seconds=900
    )
    await page.goto(swarm.dashboard)
    await expect(page.locator(".card.approval")).to_have_count(1)
    await page.wait_for_timeout(1500)
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
