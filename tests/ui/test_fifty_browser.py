"""The dashboard at fifty agents, in a real browser against a real hive: fifty agent
processes (the sleeper harness, approved the operator's way), real pushes for the
approvals, a thousand questions, traffic through the broker, turns reported on the
agents' own sockets, a kill and a crash loop. Screenshots land in DOCS."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from controller.hive import Hive
from tests.helpers import Clone, connect_harness, git, hive_settings, running_hive, wait_for
from tests.ui.conftest import DOCS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(170)]

AGENTS = [f"agent-{i:02d}" for i in range(49)]  # and hm1nd: fifty


@dataclass
class Fifty:
    hive: Hive
    clone: Clone
    url: str


async def _approve_all(hive: Hive) -> None:
    for approval in await hive.approvals.query("pending"):
        await hive.approvals.approve(approval.id)


@pytest.fixture
async def fifty(short_dir: Path) -> AsyncIterator[Fifty]:
    settings = hive_settings(
        short_dir, dashboard_enabled=True, dashboard="127.0.0.1:0", crash_limit=3
    )
    async with running_hive(settings) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        for i, name in enumerate(AGENTS):
            clone.add_agent(name, f"worker {i}: {'docs' if i % 2 else 'tests'}")
        clone.commit_push("fifty agents", "feature/fifty")
        await wait_for(lambda: hive.approvals.query("pending"), timeout=20)
        await _approve_all(hive)
        await hive.agent_queue.wait_idle()
        await wait_for(lambda: _all_running(hive), timeout=60)
        assert hive.dashboard_port is not None
        yield Fifty(hive, clone, f"http://127.0.0.1:{hive.dashboard_port}")


async def _all_running(hive: Hive) -> bool:
    statuses = await hive.records.statuses()
    return len(statuses) == 50 and all(s.state == "running" for s in statuses.values())


_TURNS = itertools.count(1)


async def _report_turn(hive: Hive, name: str, cost: float, status: str = "ok") -> None:
    """What a harness says around a turn, on the agent's own socket."""
    client = await connect_harness(hive, name)
    async with client:
        await client.call("turn_state", state="thinking")
        # As the harness reports a finished turn (its id and start key the accounting).
        last = {
            "id": (turn := next(_TURNS)),
            "started_at": f"2026-12-01T00:00:{turn:02}+00:00",
            "duration_ms": 1200,
            "cost_usd": cost,
            "status": status,
        }
        await client.call("turn_state", state="idle", last_turn=last)


async def _crash_loop(hive: Hive, name: str) -> None:
    (hive.layout.notes_dir(name) / "crash").write_text("on purpose")
    await hive.runtime.stop(name)
    hive.agent_queue.add(name)
    await wait_for(lambda: _stalled(hive, name), timeout=30)


async def _stalled(hive: Hive, name: str) -> bool:
    status = await hive.records.status(name)
    return status is not None and status.stalled


async def test_the_agents_table_filters_sorts_and_tells_the_truth(fifty: Fifty, page: Page) -> None:
    hive = fifty.hive
    await _report_turn(hive, "agent-07", 1.25)
    await _report_turn(hive, "agent-31", 0.5)
    await _report_turn(hive, "agent-12", 0.05)
    await hive.records.set_hold("agent-03", "killed")
    await hive.runtime.stop("agent-03")
    await _crash_loop(hive, "agent-04")
    await page.goto(fifty.url)
    rows = page.locator("#r-agents tbody tr[data-name]")
    await expect(rows).to_have_count(50)
    await expect(page.get_by_test_id("agent-count")).to_have_text("50 agents")
    # Truthful chips: a held or crashed agent is never "✓ ready".
    await expect(page.get_by_test_id("chip-agent-03")).to_have_text("‖ held: killed")
    await expect(page.get_by_test_id("chip-agent-04")).to_contain_text("✗")
    await expect(page.get_by_test_id("chip-agent-05")).to_have_text("✓ ready")
    await expect(page.get_by_test_id("last-run-agent-04")).not_to_have_text("start")

    await page.get_by_test_id("agent-filter").fill("agent-1")
    visible = page.locator("#r-agents tbody tr[data-name]:not(.hidden)")
    await expect(visible).to_have_count(10)
    await expect(page.get_by_test_id("agent-count")).to_have_text("10 of 50")
    await page.get_by_test_id("agent-filter").fill("docs held")
    await expect(visible).to_have_count(1)  # agent-03: odd, so docs; and held
    await page.get_by_test_id("agent-filter").fill("")

    await page.get_by_test_id("agent-sort").select_option("spend")
    names = await rows.evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names[:3] == ["agent-07", "agent-31", "agent-12"]
    await expect(page.get_by_test_id("agent-agent-07")).to_contain_text("$1.25")
    # A live update (another turn) keeps the operator's sort and filter.
    await page.get_by_test_id("agent-filter").fill("agent-")
    await _report_turn(hive, "agent-40", 2.0)
    await expect(rows.first).to_have_attribute("data-name", "agent-40", timeout=10_000)
    await page.get_by_test_id("agent-sort").select_option("activity")
    await expect(rows.first).to_have_attribute("data-name", "agent-40")
    await page.get_by_test_id("agent-sort").select_option("name")
    await page.get_by_test_id("agent-filter").fill("")
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "dashboard-50-agents.png"), full_page=True)

    await page.goto(fifty.url + "/reconcile")
    crashed = page.get_by_test_id("recon-agent-04")
    await expect(crashed).to_contain_text("Stalled=True")
    await expect(crashed.locator(".chip.v-crash, .chip.v-backoff").first).to_be_visible()
    for action in ("restart", "backoff"):  # a crash recovered or waited out is never "ok"
        runs = crashed.locator(".run").filter(has=page.locator("b", has_text=action))
        await expect(runs.locator(".chip.v-ok")).to_have_count(0)


async def _push_branches(clone: Clone, n: int, big: int | None = None) -> None:
    """`n` branches pushed at once, each changing one agent's prompt; branch `big`
    changes twenty."""
    git(clone.path, "fetch", "-q", "origin")
    for i in range(n):
        git(clone.path, "checkout", "-qB", f"change/{i:03d}", "origin/main")
        if i == big:  # twenty prompts of three lines: 60 lines in 20 files
            for name in AGENTS[:20]:
                clone.write(f"agents/{name}/prompt.md", f"be {name}\n" * 3)
        else:
            clone.write(f"agents/{AGENTS[i % len(AGENTS)]}/prompt.md", f"line {i}\n" * 3)
        clone.commit(f"prompt {i}")
    git(clone.path, "push", "-q", "origin", *[f"change/{i:03d}" for i in range(n)])


async def test_approvals_are_paged_newest_first_collapsed_and_confirmed(
    fifty: Fifty, page: Page
) -> None:
    hive = fifty.hive
    await _push_branches(fifty.clone, 25, big=24)
    await wait_for(lambda: _pending(hive, 25), timeout=60)
    pending = await hive.approvals.query("pending")
    newest, oldest = pending[0], pending[-1]
    await page.goto(fifty.url)
    await expect(page.get_by_test_id("notify-approvals")).to_contain_text("25 pending approvals")
    await expect(page.get_by_test_id("pending-count")).to_have_text("25 pending, newest first")
    cards = page.locator("#r-approvals .card.approval")
    await expect(cards).to_have_count(10)
    await expect(cards.first).to_have_attribute("data-testid", f"approval-{newest.id}")
    big = page.get_by_test_id(f"diff-{newest.id}")
    await expect(big).not_to_have_attribute("open", "")
    await expect(big.locator("summary")).to_contain_text("60 changed lines in 20 files, collapsed")
    await expect(page.get_by_test_id(f"diff-{pending[1].id}")).to_have_attribute("open", "")
    DOCS.mkdir(exist_ok=True)
    await page.locator("#approvals").screenshot(path=str(DOCS / "approvals-paged.png"))

    await page.get_by_test_id("older-approvals-page-top").click()
    pager = page.get_by_test_id("pager-approvals-page-top")
    await expect(pager).to_contain_text("11\u201320 of 25")
    await page.get_by_test_id("older-approvals-page-top").click()
    await expect(pager).to_contain_text("21\u201325 of 25")
    await expect(cards).to_have_count(5)
    await expect(cards.last).to_have_attribute("data-testid", f"approval-{oldest.id}")

    # Approve takes a second click, and says what it will do first.
    approve = page.get_by_test_id(f"approve-{oldest.id}")
    await approve.click()
    await expect(approve).to_contain_text(f"confirm: merge #{oldest.id}")
    assert (await hive.approvals.get(oldest.id)).status == "pending"
    await approve.click()
    await wait_for(lambda: _status(hive, oldest.id, "approved"), timeout=20)
    await expect(page.get_by_test_id(f"history-{oldest.id}")).to_contain_text("approved")
    # The screen stays where the operator paged to, its counts true.
    await expect(pager).to_contain_text("of 24")

    deny = page.get_by_test_id(f"deny-{pending[-2].id}")
    await page.get_by_test_id(f"deny-reason-{pending[-2].id}").fill("not now")
    await deny.click()
    await expect(deny).to_contain_text("confirm: deny")
    assert (await hive.approvals.get(pending[-2].id)).status == "pending"
    await deny.click()
    await wait_for(lambda: _status(hive, pending[-2].id, "denied"), timeout=20)


async def _pending(hive: Hive, n: int) -> bool:
    return await hive.approvals.count_pending() == n


async def _status(hive: Hive, approval_id: int, status: str) -> bool:
    return (await hive.approvals.get(approval_id)).status == status


async def test_a_thousand_questions_are_paged_newest_first_and_counted(
    fifty: Fifty, page: Page
) -> None:
    hive = fifty.hive
    for i in range(1000):
        await hive.questions.ask("hm1nd", f"question number {i + 1}?", ["yes", "no"])
    await page.goto(fifty.url)
    await expect(page.get_by_test_id("notify-questions")).to_contain_text("1000 questions")
    await expect(page.get_by_test_id("questions-count")).to_have_text("1000 open, newest first")
    cards = page.locator("#r-questions .card.question")
    await expect(cards).to_have_count(20)
    await expect(cards.first).to_contain_text("question number 1000?")
    await page.get_by_test_id("older-questions").click()
    await expect(page.get_by_test_id("pager-questions")).to_contain_text("21\u201340 of 1000")
    await expect(cards.first).to_contain_text("question number 980?")
    # A new question is counted at once, wherever the operator paged to.
    await hive.questions.ask("hm1nd", "one more?")
    await expect(page.get_by_test_id("questions-count")).to_have_text("1001 open, newest first")
    await expect(page.get_by_test_id("notify-questions")).to_contain_text("1001 questions")


async def test_who_talks_to_whom_is_a_readable_matrix_that_updates_live(
    fifty: Fifty, page: Page
) -> None:
    hive = fifty.hive
    rng = random.Random(12)
    for _ in range(300):
        a, b = rng.sample(AGENTS, 2)
        await hive.broker.send(a, b, f"{a} to {b}")
    for _ in range(3):
        await hive.broker.send("agent-01", "agent-02", "hello two")
    await page.goto(fifty.url)
    matrix = page.get_by_test_id("talk-matrix")
    await expect(matrix).to_be_visible()
    assert await matrix.locator("th.col").count() == 51  # fifty agents and the operator
    cell = page.get_by_test_id("cell-agent-01-agent-02")
    title = await cell.get_attribute("title")
    assert title is not None and title.startswith("agent-01 → agent-02: ")
    before = int(title.split(": ")[1].split()[0])
    # Every column label is laid out apart from its neighbours: none overlap.
    boxes = await matrix.locator("th.col").evaluate_all(
        "ths => ths.map(t => { const r = t.getBoundingClientRect(); return [r.left, r.right]; })"
    )
    assert all(right <= boxes[i + 1][0] + 0.5 for i, (_, right) in enumerate(boxes[:-1]))
    await matrix.scroll_into_view_if_needed()
    DOCS.mkdir(exist_ok=True)
    await page.locator("#messages").screenshot(path=str(DOCS / "talk-matrix-50.png"))

    await hive.broker.send("agent-01", "agent-02", "once more")
    await expect(cell).to_have_attribute(
        "title", f"agent-01 → agent-02: {before + 1} messages", timeout=10_000
    )
    fifty.clone.checkout("feature/newcomer")
    fifty.clone.add_agent("newcomer", "arrives late")
    fifty.clone.commit_push("a newcomer", "feature/newcomer")
    await wait_for(lambda: _pending(hive, 1), timeout=20)
    await _approve_all(hive)
    await expect(matrix.locator("th.col")).to_have_count(52, timeout=10_000)


async def test_logs_show_turns_errors_crashes_and_restarts(fifty: Fifty, page: Page) -> None:
    hive = fifty.hive
    await _report_turn(hive, "agent-01", 0.02)
    await _report_turn(hive, "agent-01", 0.0, status="error")
    await _crash_loop(hive, "agent-04")
    await page.goto(fifty.url + "/logs?agent=agent-01")
    activity = page.get_by_test_id("activity")
    await expect(activity).to_contain_text("turn started")
    await expect(activity).to_contain_text("turn ok · 1.2s · $0.0200")
    # (Each stand-in harness connection closes after its report, so the turn also went
    # offline, "the harness disconnected": more error rows than this one.)
    await expect(activity.locator("li.k-error", has_text="turn error")).to_have_count(1)
    await page.goto(fifty.url + "/logs?agent=agent-04")
    await expect(activity).to_contain_text("its harness exited")
    await expect(activity).to_contain_text("reconcile restart: crash")
    await expect(activity).to_contain_text("stalled: crashed")
    await hive.records.set_hold("agent-04", "killed")
    await expect(activity).to_contain_text("held: killed", timeout=10_000)  # follows live
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "logs-activity.png"), full_page=True)
