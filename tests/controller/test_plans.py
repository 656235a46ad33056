"""Plans that stay true: pending plans are recomputed when applied main moves, and
proposed main follows applied main, so `git pull --rebase` is the whole rebase story."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.bus import Event
from controller.events import EventType
from controller.hive import Hive
from controller.values import Approval
from tests.helpers import Clone, admin, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def pending_by_ref(hive: Hive, n: int) -> dict[str, Approval] | None:
    rows = await hive.approvals.query("pending")
    if len(rows) != n:
        return None
    return {r.ref.removeprefix("refs/heads/"): r for r in rows}


def branch(clone: Clone, name: str, base: str, files: dict[str, str]) -> str:
    clone.checkout(name, base)
    for rel, text in files.items():
        clone.write(rel, text)
    sha = clone.commit(name)
    clone.push(name)
    return sha


async def status(hive: Hive) -> dict[str, Any]:
    async with admin(hive) as client:
        result: dict[str, Any] = await client.call("status")
    return result


async def test_a_pending_plan_shows_the_conflict_with_applied_main_before_anyone_clicks(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        branch(clone, "one", base, {"agents/alice/agent.toml": 'description = "one"\n'})
        branch(clone, "two", base, {"agents/alice/agent.toml": 'description = "two"\n'})
        approvals = await wait_for(lambda: pending_by_ref(hive, 2))
        two = approvals["two"]
        assert two.mergeable and two.errors == ()
        with hive.bus.subscribe(types=(EventType.APPROVAL_REPLANNED,)) as sub:
            await hive.approvals.approve(approvals["one"].id)
            with anyio.fail_after(10):
                event: Event = await sub.next()
        replanned = event.data["approval"]
        assert replanned.id == two.id
        assert replanned.mergeable is False
        (error,) = replanned.errors
        assert "conflicts in: agents/alice/agent.toml" in error
        assert "git pull --rebase" in error and "refs/hive/applied" not in error
        stored = await hive.approvals.get(two.id)
        assert stored.status == "pending"
        assert (stored.mergeable, stored.errors, stored.base) == (
            False,
            (error,),
            hive.applied.sha,
        )
        # `hive approvals` says it too, without anyone clicking approve.
        listed = await anyio.run_process(
            [
                sys.executable,
                "-m",
                "controller.cli_admin",
                "--socket",
                str(hive.layout.host_socket),
                "approvals",
            ]
        )
        out = listed.stdout.decode()
        assert "conflicts with applied main" in out
        assert "agents/alice/agent.toml" in out


async def test_only_plans_whose_merge_base_or_touched_paths_changed_are_recomputed(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        branch(clone, "alice", base, {"agents/alice/agent.toml": 'description = "a"\n'})
        branch(clone, "notes", base, {"notes/todo.md": "later\n"})
        branch(clone, "prompt", base, {"agents/hm1nd/prompt.md": "be brief\n"})
        branch(clone, "land", base, {"notes/other.md": "x\n", "agents/hm1nd/prompt.md": "hi\n"})
        approvals = await wait_for(lambda: pending_by_ref(hive, 4))
        with hive.bus.subscribe(types=(EventType.APPROVAL_REPLANNED,)) as sub:
            await hive.approvals.approve(approvals["land"].id)
            await hive.proposal_queue.wait_idle()
            replanned = []
            while True:
                try:
                    replanned.append(sub.next_nowait().data["approval"].ref)
                except anyio.WouldBlock:
                    break
        # `prompt` touches what landed (and now conflicts); `alice` and `notes` do not.
        assert replanned == ["refs/heads/prompt"]
        after = await pending_by_ref(hive, 3)
        assert after is not None
        assert after["prompt"].mergeable is False
        for name in ("alice", "notes"):
            assert after[name].mergeable and after[name].errors == ()
            assert after[name].planned_at == approvals[name].planned_at
            # Still true against what runs now, which the record says.
            assert after[name].base == hive.applied.sha
        # Approving one of them later re-plans at approve as always, and it lands.
        await hive.approvals.approve(after["notes"].id)


async def test_proposed_main_follows_applied_main_so_a_pull_rebase_is_the_whole_story(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        branch(clone, "alice", base, {"agents/alice/agent.toml": 'description = "a"\n'})
        branch(clone, "bob", base, {"agents/bob/agent.toml": 'description = "b"\n'})
        approvals = await wait_for(lambda: pending_by_ref(hive, 2))
        await hive.approvals.approve(approvals["alice"].id)
        await hive.proposal_queue.wait_idle()
        git(clone.path, "fetch", "-q", "origin")
        assert git(clone.path, "rev-parse", "origin/main") == hive.applied.sha
        assert (await status(hive))["proposed_main"] == {
            "sha": hive.applied.sha,
            "state": "following",
        }
        # bob's branch is behind; rebasing it is one pull.
        git(clone.path, "checkout", "-q", "bob")
        git(clone.path, "pull", "-q", "--rebase", "origin", "main")
        rebased = git(clone.path, "rev-parse", "HEAD")
        git(clone.path, "push", "-q", "--force-with-lease", "origin", "HEAD:bob")
        fresh = await wait_for(lambda: _pending_at(hive, rebased))
        approved = await hive.approvals.approve(fresh.id)
        assert approved.applied_sha == rebased  # a fast-forward: nothing to merge
        await hive.proposal_queue.wait_idle()
        git(clone.path, "fetch", "-q", "origin")
        assert git(clone.path, "rev-parse", "origin/main") == rebased


async def _pending_at(hive: Hive, sha: str) -> Approval | None:
    return next((a for a in await hive.approvals.query("pending") if a.sha == sha), None)


async def test_a_diverged_proposed_main_is_left_alone_and_said_so(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        on_main = branch(clone, "main", base, {"notes/main.md": "pushed to main\n"})
        branch(clone, "side", base, {"notes/side.md": "a side branch\n"})
        approvals = await wait_for(lambda: pending_by_ref(hive, 2))
        with hive.bus.subscribe(types=(EventType.PROPOSED_DIVERGED,)) as sub:
            await hive.approvals.approve(approvals["side"].id)
            with anyio.fail_after(10):
                event = await sub.next()
        assert event.data == {"sha": on_main, "applied_sha": hive.applied.sha}
        assert git(hive.git.proposed_path, "rev-parse", "main") == on_main
        assert (await status(hive))["proposed_main"] == {"sha": on_main, "state": "diverged"}
        async with admin(hive) as client:
            logged = await wait_for(lambda: client.call("events", type="proposed"))
        assert logged[0]["type"] == "proposed.diverged"
        # Approving main's own approval brings the two together again.
        await hive.approvals.approve(approvals["main"].id)
        await hive.proposal_queue.wait_idle()
        assert git(hive.git.proposed_path, "rev-parse", "main") == hive.applied.sha
        assert (await status(hive))["proposed_main"]["state"] == "following"
