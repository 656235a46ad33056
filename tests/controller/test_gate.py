"""The enforced gate end to end: real pushes into applied.git, real moves behind the
daemon's back, the alarm, `applied-reset` and `applied-adopt` over the host socket."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.hive import Hive
from controller.protocol import ProtocolError
from controller.store import Store
from tests.helpers import GIT_ENV, Clone, admin, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def status(hive: Hive) -> dict[str, Any]:
    async with admin(hive) as client:
        result: dict[str, Any] = await client.call("status")
    return result


async def alarmed(hive: Hive) -> dict[str, Any] | None:
    alarm: dict[str, Any] | None = (await status(hive))["alarm"]
    return alarm


async def agent_names(hive: Hive) -> set[str]:
    async with admin(hive) as client:
        return {r["name"] for r in await client.call("agents")}


async def applied_events(hive: Hive, n: int) -> list[dict[str, Any]]:
    """The audit log's `applied.*` entries, oldest first, once `n` have been written."""

    async def logged() -> list[dict[str, Any]] | None:
        async with admin(hive) as client:
            rows: list[dict[str, Any]] = await client.call("events", type="applied")
        return rows[::-1] if len(rows) >= n else None

    found: list[dict[str, Any]] = await wait_for(logged)
    return found


def mallory_commit(root: Path, applied: Path) -> tuple[Clone, str]:
    """A commit declaring `mallory` in a clone of applied.git (reading it is allowed)."""
    clone = Clone(root / "mallory", applied)
    clone.add_agent("mallory", "not approved by anyone")
    return clone, clone.commit("sneak mallory in")


def fetch_into_applied(applied: Path, clone: Clone) -> None:
    """Move applied main behind the daemon's back: a fetch runs no hook."""
    subprocess.run(
        ["git", "--git-dir", str(applied), "fetch", "-q", str(clone.path), "+HEAD:refs/heads/main"],
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    )


async def test_a_push_into_applied_git_is_refused_and_nothing_is_created(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        head = hive.applied.sha
        clone, _ = mallory_commit(short_dir, hive.git.applied_path)
        pushed = await anyio.run_process(
            ["git", "push", "origin", "HEAD:main"],
            cwd=clone.path,
            env={**os.environ, **GIT_ENV},
            check=False,
        )
        assert pushed.returncode != 0
        assert "applied.git does not accept pushes" in pushed.stderr.decode()
        assert str(hive.git.proposed_path) in pushed.stderr.decode()
        assert await hive.git.applied_ref() == head
        await hive.resync()
        await hive.agent_queue.wait_idle()
        assert "mallory" not in await agent_names(hive)
        assert await alarmed(hive) is None


async def test_a_move_behind_the_daemons_back_is_an_alarm_and_is_never_reconciled(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        recorded = hive.applied.sha
        clone, found = mallory_commit(short_dir, hive.git.applied_path)
        fetch_into_applied(hive.git.applied_path, clone)
        alarm = await wait_for(lambda: alarmed(hive))
        assert alarm == {
            "code": "applied_moved",
            "message": alarm["message"],
            "recorded_sha": recorded,
            "found_sha": found,
        }
        assert "hive applied reset" in alarm["message"]
        # Never reconciled: not by the move, not by a resync, not by an explicit reconcile.
        await hive.resync()
        async with admin(hive) as client:
            await client.call("reconcile")
        await hive.agent_queue.wait_idle()
        assert "mallory" not in await agent_names(hive)
        assert (await hive.runtime.observe("mallory")).state.value == "missing"
        assert (await status(hive))["applied_sha"] == recorded
        events = await applied_events(hive, 1)
        assert [e["type"] for e in events] == ["applied.alarm"]
        assert events[0]["alarm"]["found_sha"] == found
        # Nothing can be approved on top of an unrecorded move.
        proposer = Clone(short_dir / "clone", hive.git.proposed_path)
        proposer.write("notes/x.md", "x")
        proposer.commit_push("a note", "note")
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
        async with admin(hive) as client:
            with pytest.raises(ProtocolError) as info:
                await client.call("approve", id=approval.id)
        assert info.value.code == "conflict"
        assert "the gate is closed" in info.value.message
        assert (await hive.approvals.get(approval.id)).status == "pending"
        assert await hive.git.applied_ref() == found


async def test_reset_moves_applied_main_back_to_the_recorded_sha(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        recorded = hive.applied.sha
        async with admin(hive) as client:
            with pytest.raises(ProtocolError, match="there is no alarm to resolve"):
                await client.call("applied-reset")
        clone, found = mallory_commit(short_dir, hive.git.applied_path)
        # git update-ref behind the daemon's back, this time: no hook, no lock, no record.
        applied = hive.git.applied_path
        git(applied, "fetch", "-q", str(clone.path), "HEAD")  # the objects, no ref
        git(applied, "update-ref", "refs/heads/main", found)
        assert await hive.gate.check() is not None
        async with admin(hive) as client:
            reset = await client.call("applied-reset")
        assert reset == {"recorded_sha": recorded, "found_sha": found}
        assert await hive.git.applied_ref() == recorded
        assert await alarmed(hive) is None
        types = [e["type"] for e in await applied_events(hive, 3)]
        assert types == ["applied.alarm", "applied.reset", "applied.alarm"]
        assert "mallory" not in await agent_names(hive)
        # The gate is open again: an approval lands on the recorded sha.
        proposer = Clone(short_dir / "clone", hive.git.proposed_path)
        proposer.add_agent("alice")
        proposer.commit_push("alice", "alice")
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
        async with admin(hive) as client:
            approved = await client.call("approve", id=approval.id)
        assert git(hive.git.applied_path, "rev-parse", "main^") == recorded
        assert approved["applied_sha"] == await hive.git.applied_ref()


async def test_adopt_turns_the_found_sha_into_an_approval_that_is_approved_normally(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        recorded = hive.applied.sha
        clone, found = mallory_commit(short_dir, hive.git.applied_path)
        fetch_into_applied(hive.git.applied_path, clone)
        await wait_for(lambda: alarmed(hive))
        async with admin(hive) as client:
            approval = await client.call("applied-adopt")
        assert approval["status"] == "pending"
        assert approval["sha"] == found
        assert approval["ref"] == f"refs/heads/adopt/{found[:12]}"
        assert {"agent": "mallory", "action": "create"} in approval["plan"]
        assert approval["errors"] == []
        # Until it is approved, applied main is back at the recorded sha and nothing runs.
        assert await hive.git.applied_ref() == recorded
        assert await alarmed(hive) is None
        assert "mallory" not in await agent_names(hive)
        async with admin(hive) as client:
            approved = await client.call("approve", id=approval["id"])
        assert approved["applied_sha"] == found  # a fast-forward onto the recorded sha
        await wait_for(lambda: _running(hive, "mallory"))
        types = [e["type"] for e in await applied_events(hive, 4)]
        assert types == ["applied.alarm", "applied.adopted", "applied.alarm", "applied.moved"]


async def _running(hive: Hive, name: str) -> bool:
    async with admin(hive) as client:
        rows = await client.call("agents")
    return any(r["name"] == name and r["state"] == "running" and r["ready"] for r in rows)


async def test_an_alarm_found_at_start_keeps_agents_at_the_recorded_revision(
    short_dir: Path,
) -> None:
    settings = hive_settings(short_dir)
    async with running_hive(settings) as hive:
        recorded = hive.applied.sha
        clone, found = mallory_commit(short_dir, hive.git.applied_path)
    fetch_into_applied(settings.state_dir / "applied.git", clone)
    async with running_hive(settings) as hive:
        alarm = await alarmed(hive)
        assert alarm is not None and alarm["found_sha"] == found
        assert hive.applied.sha == recorded
        await hive.resync()
        await hive.agent_queue.wait_idle()
        assert "mallory" not in await agent_names(hive)
        await wait_for(lambda: _running(hive, "hm1nd"))


async def test_a_state_dir_from_before_the_gate_records_its_head_at_first_start(
    short_dir: Path,
) -> None:
    settings = hive_settings(short_dir)
    async with running_hive(settings) as hive:
        proposer = Clone(short_dir / "clone", hive.git.proposed_path)
        proposer.add_agent("alice")
        proposer.commit_push("alice")
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
        head = (await hive.approvals.approve(approval.id)).applied_sha
    # What a state dir from before the gate looks like: no record of any move.
    store = Store(settings.state_dir / "hive.sqlite")
    store.call_sync(lambda db: db.execute("DELETE FROM applied_moves"))
    store.close()
    async with running_hive(settings) as hive:
        assert await alarmed(hive) is None
        assert hive.applied.sha == head
        (first,) = await hive.gate.moves()
        assert (first.new, first.reason) == (head, "recorded at first start")
        await wait_for(lambda: _running(hive, "alice"))


async def test_an_approve_racing_an_unseen_move_is_refused_and_stays_pending(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        proposer = Clone(short_dir / "clone", hive.git.proposed_path)
        proposer.write("notes/x.md", "x")
        proposer.commit_push("a note", "note")
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
        clone, found = mallory_commit(short_dir, hive.git.applied_path)
        # Approve at once: whether the gate has seen the move yet or finds it at the
        # compare-and-swap, the answer is the same.
        fetch_into_applied(hive.git.applied_path, clone)
        async with admin(hive) as client:
            with pytest.raises(ProtocolError, match="the gate is closed") as info:
                await client.call("approve", id=approval.id)
        assert info.value.code == "conflict"
        stored = await hive.approvals.get(approval.id)
        assert (stored.status, stored.merging) == ("pending", False)
        assert await hive.git.applied_ref() == found
        assert (await alarmed(hive)) is not None
        assert [m.reason for m in await hive.gate.moves()] == ["recorded at first start"]


async def test_a_deleted_applied_main_is_an_alarm_and_reset_puts_it_back(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        recorded = hive.applied.sha
        git(hive.git.applied_path, "update-ref", "-d", "refs/heads/main")
        alarm = await wait_for(lambda: alarmed(hive))
        assert (alarm["code"], alarm["found_sha"]) == ("applied_missing", "")
        async with admin(hive) as client:
            with pytest.raises(ProtocolError, match="nothing to adopt"):
                await client.call("applied-adopt")
            assert await client.call("applied-reset") == {
                "recorded_sha": recorded,
                "found_sha": "",
            }
        assert git(hive.git.applied_path, "rev-parse", "main") == recorded
        assert await alarmed(hive) is None
