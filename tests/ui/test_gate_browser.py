"""The gate on the dashboard, in a real browser: a card that starts to conflict and the
alarm banner both arrive live, before anyone clicks."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from controller.values import Approval
from tests.helpers import git, wait_for
from tests.ui.conftest import UiSwarm

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]


async def _pending(swarm: UiSwarm, branch: str) -> Approval:
    async def found() -> list[Approval]:
        rows = await swarm.hive.approvals.query("pending")
        return [a for a in rows if a.ref == f"refs/heads/{branch}"]

    (approval,) = await wait_for(found, timeout=20)
    result: Approval = approval
    return result


async def test_a_card_shows_its_conflict_and_the_alarm_banner_appears_live(
    swarm: UiSwarm, page: Page
) -> None:
    clone = swarm.clone("gate")
    base = git(clone.path, "rev-parse", "HEAD")
    for branch in ("one", "two"):
        clone.checkout(branch, base)
        clone.write("notes/plan.md", f"the plan of {branch}\n")
        clone.commit_push(branch, branch)
    one, two = await _pending(swarm, "one"), await _pending(swarm, "two")
    await page.goto(swarm.dashboard)
    card = page.get_by_test_id(f"approval-{two.id}")
    await expect(card).to_be_visible()
    await expect(page.get_by_test_id(f"conflict-{two.id}")).to_have_count(0)
    await expect(page.get_by_test_id(f"approve-{two.id}")).to_be_enabled()

    await swarm.hive.approvals.approve(one.id)  # elsewhere: the CLI, another operator
    conflict = page.get_by_test_id(f"conflict-{two.id}")
    await expect(conflict).to_contain_text("conflicts with applied main", timeout=10_000)
    await expect(card.locator(".errors")).to_contain_text("git pull --rebase")
    await expect(page.get_by_test_id(f"approve-{two.id}")).to_be_disabled()

    # Applied main moved behind the daemon's back: the banner, live.
    applied = swarm.hive.git.applied_path
    found = git(
        applied, "commit-tree", "-p", "main", "-m", "sneaky", f"{swarm.hive.applied.sha}^{{tree}}"
    )
    git(applied, "update-ref", "refs/heads/main", found)
    banner = page.get_by_test_id("alarm")
    await expect(banner).to_contain_text("applied_moved", timeout=10_000)
    await expect(banner).to_contain_text(found[:10])
    await expect(banner).to_contain_text("hive applied reset")
    await swarm.hive.gate.reset()
    await expect(banner).to_have_count(0, timeout=10_000)
