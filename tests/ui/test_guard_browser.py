"""The guard rails on the dashboard, in a real browser against a real hive: spend per
agent and for the hive, cancel turn, purge inbox, cancel all questions, roll back to here."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from playwright.async_api import Page, expect

from controller.values import Approval
from tests.fakes.anthropic import hang, text
from tests.helpers import wait_for
from tests.ui.conftest import UiSwarm

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]


def woke(name: str) -> Any:
    return lambda r: f"You are {name}," in r.last_user_text


async def _apply(swarm: UiSwarm, description: str) -> Approval:
    clone = swarm.clone(f"c{len(list(swarm.root.iterdir()))}")
    clone.add_agent("alice", description, model='"claude-sonnet-4-5"')
    sha = clone.commit_push(f"alice: {description}")

    async def pending() -> list[Approval]:
        return [a for a in await swarm.hive.approvals.query("pending") if a.sha == sha]

    (approval,) = await wait_for(pending, timeout=20)
    return await swarm.hive.approvals.approve(approval.id)


async def test_roll_back_to_here_proposes_the_tree_of_that_approval(
    swarm: UiSwarm, page: Page
) -> None:
    first = await _apply(swarm, "first")
    await _apply(swarm, "second")
    await page.goto(swarm.dashboard)
    await page.get_by_test_id(f"rollback-{first.id}").click()

    async def proposed() -> list[Approval]:
        return [a for a in await swarm.hive.approvals.query("pending") if a.kind == "rollback"]

    (rollback,) = await wait_for(proposed)
    assert rollback.ref == f"refs/heads/rollback/{first.applied_sha[:12]}"
    card = page.get_by_test_id(f"approval-{rollback.id}")
    await expect(card).to_be_visible(timeout=10_000)
    await expect(card.locator(".plan")).to_contain_text("update alice")
    approve = page.get_by_test_id(f"approve-{rollback.id}")
    await approve.click()
    await expect(approve).to_contain_text("confirm")  # the second click merges
    await approve.click()

    async def back() -> bool:
        agent = await swarm.hive.git.applied_agent("alice")
        return agent is not None and agent.spec is not None and agent.spec.description == "first"

    await wait_for(back)


async def test_spend_cancel_turn_purge_and_cancel_all_from_the_dashboard(
    swarm: UiSwarm, page: Page
) -> None:
    await _apply(swarm, "spends")
    await swarm.wait_idle("alice")
    swarm.api.script(text("a paid answer", when=woke("alice")), hang(when=woke("alice")))
    await swarm.hive.broker.send("operator", "alice", "one")
    await wait_for(lambda: _turns(swarm, "alice", 1), timeout=60)
    await page.goto(swarm.dashboard)
    spend = page.get_by_test_id("spend-alice")
    await expect(spend).not_to_contain_text("$0.0000 /", timeout=10_000)
    await expect(page.get_by_test_id("spend-hive")).to_contain_text("1 turns")
    # While a turn hangs, what waits behind it is purged; then the turn is cancelled.
    await swarm.hive.broker.send("operator", "alice", "two: hangs")
    with anyio.fail_after(60):
        await swarm.api.wait_for(lambda r: "two: hangs" in r.last_user_text)
    await swarm.hive.broker.send("operator", "alice", "three: waits")
    await swarm.hive.broker.send("operator", "alice", "four: waits")
    purge = page.get_by_test_id("purge-alice")
    await purge.click()
    await expect(purge).to_contain_text("confirm: purge alice's inbox")
    await purge.click()
    (event,) = await wait_for(lambda: _purged(swarm), timeout=10)
    assert [m["body"] for m in event["messages"]] == ["three: waits", "four: waits"]
    await page.get_by_test_id("cancel-alice").click()
    await wait_for(lambda: _turns(swarm, "alice", 2), timeout=30)
    assert swarm.hive.turns["alice"]["last_turn"]["status"] == "cancelled"
    assert await swarm.hive.broker.inbox("alice") == []
    for n in range(3):
        await swarm.hive.questions.ask("hm1nd", f"question {n}?")
    button = page.get_by_test_id("cancel-all-questions")
    await expect(button).to_contain_text("cancel all 3 questions", timeout=10_000)
    await button.click()
    await button.click()  # the first click arms it
    await wait_for(lambda: _no_questions(swarm), timeout=10)
    await expect(page.get_by_test_id("cancel-all-questions")).to_be_hidden(timeout=10_000)


async def _turns(swarm: UiSwarm, name: str, n: int) -> bool:
    rows = await swarm.hive.usage.by_day(name)
    return sum(r.turns for r in rows) >= n and swarm.turn_state(name) == "idle"


async def _purged(swarm: UiSwarm) -> list[dict[str, Any]]:
    return list(await swarm.hive.eventlog.recent(type_prefix="message.purged"))


async def _no_questions(swarm: UiSwarm) -> bool:
    return await swarm.hive.questions.query("pending") == []
