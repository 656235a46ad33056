"""Rollback in one approval (`hive rollback [REV]`), and auto-rollback of an approval that
leaves an agent not Ready within `ready_timeout_seconds`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.hive import Hive
from controller.protocol import ProtocolError
from controller.rollback import AUTO_APPROVER
from hyperhive.daemon import build_hive
from tests.fakes.clock import FakeClock
from tests.helpers import Clone, admin, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def hive_on(root: Path, clock: FakeClock | None = None) -> AsyncIterator[Hive]:
    async with running_hive(hive_settings(root), lambda s: build_hive(s, clock=clock)) as hive:
        yield hive


async def apply(hive: Hive, clone: Clone, files: dict[str, str]) -> int:
    git(clone.path, "pull", "-q", "--rebase", "origin", "main")
    for path, text in files.items():
        clone.write(path, text)
    sha = clone.commit_push("change")

    async def pending() -> Any:
        return [a for a in await hive.approvals.query("pending") if a.sha == sha]

    (approval,) = await wait_for(pending)
    await hive.approvals.approve(approval.id)
    return int(approval.id)


async def alice_toml(hive: Hive) -> bytes:
    agent = await hive.git.applied_agent("alice")
    assert agent is not None
    return agent.files["agent.toml"]


async def test_hive_rollback_proposes_the_previous_tree_as_one_approval(short_dir: Path) -> None:
    async with hive_on(short_dir) as hive, admin(hive) as client:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        first = await apply(
            hive, clone, {"agents/alice/agent.toml": 'description = "one"\nenabled = false\n'}
        )
        one = hive.applied.sha
        await apply(
            hive, clone, {"agents/alice/agent.toml": 'description = "two"\nenabled = false\n'}
        )
        two = hive.applied.sha
        rollback = await client.call("rollback")
        assert rollback["kind"] == "rollback" and rollback["status"] == "pending"
        assert rollback["ref"] == f"refs/heads/rollback/{one[:12]}"
        assert rollback["plan"] == [
            {"agent": "alice", "action": "update"},
            {"agent": "hm1nd", "action": "none"},
        ]
        assert rollback["errors"] == [] and rollback["note"].startswith(f"rollback to {one[:12]}")
        (event,) = await wait_for(lambda: client.call("events", type="approval.rollback"))
        assert event["automatic"] is False and event["to"] == one
        approved = await client.call("approve", id=rollback["id"])
        assert approved["status"] == "approved"
        assert await alice_toml(hive) == b'description = "one"\nenabled = false\n'
        # A fast-forward onto what ran: history is kept, nothing is rewritten.
        assert git(clone.path, "fetch", "-q", "origin") == ""
        parents = git(clone.path, "log", "-1", "--format=%P", hive.applied.sha)
        assert parents == two
        # Roll back to an approval by its id: the tree as that approval left it.
        # applied main's tree is that tree again now: nothing to roll back to there.
        with pytest.raises(ProtocolError, match="already the tree"):
            await client.call("rollback", to=str(first))
        back = await client.call("rollback", to=two)
        assert back["ref"] == f"refs/heads/rollback/{two[:12]}"


async def test_a_bad_rollback_target_is_a_clear_error_that_changes_nothing(
    short_dir: Path,
) -> None:
    async with hive_on(short_dir) as hive, admin(hive) as client:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        await apply(hive, clone, {"agents/alice/agent.toml": 'description = "one"\n'})
        head = hive.applied.sha
        clone.checkout("side")
        clone.write("agents/bob/agent.toml", 'description = "b"\n')
        side = clone.commit_push("not applied", "side")
        pending = await wait_for(lambda: hive.approvals.query("pending"))
        heads = await hive.git.proposed_heads()
        for to, code, words in [
            (head, "invalid", "is applied main itself"),
            (side, "not_found", "is not a commit of applied main"),
            ("0" * 40, "not_found", "is not a commit of applied main"),
            ("HEAD~1", "invalid", "neither an approval id nor a commit sha"),
            (str(pending[0].id), "invalid", "is pending: roll back only to an approved one"),
            ("999", "not_found", "no approval #999"),
        ]:
            with pytest.raises(ProtocolError) as info:
                await client.call("rollback", to=to)
            assert (info.value.code, words in info.value.message) == (code, True), to
        assert await hive.git.proposed_heads() == heads
        assert len(await hive.approvals.query()) == len(pending) + 1  # and the applied one
        assert hive.applied.sha == head


async def crash_looping(hive: Hive, name: str) -> bool:
    status = await hive.records.status(name)
    return status is not None and not status.ready and status.reason.startswith("Crash")


@pytest.mark.parametrize("mode", ["apply", "propose"])
async def test_an_approval_that_leaves_an_agent_not_ready_is_rolled_back_by_itself(
    short_dir: Path, mode: str
) -> None:
    clock = FakeClock()
    async with hive_on(short_dir, clock) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        policy = f'ready_timeout_seconds = 60\nauto_rollback = "{mode}"\n'
        await apply(
            hive,
            clone,
            {"hive.toml": policy, "agents/alice/agent.toml": 'description = "fine"\n'},
        )
        good = hive.applied.sha
        await wait_for(lambda: _ready(hive, "alice"))
        clock.advance(61)  # that approval's agents were Ready in time: nothing happens
        await anyio.wait_all_tasks_blocked()
        assert [a.kind for a in await hive.approvals.query("pending")] == []
        (hive.layout.notes_dir("alice") / "crash").write_text("")  # the update will crash
        broken = await apply(hive, clone, {"agents/alice/agent.toml": 'description = "bad"\n'})
        await wait_for(lambda: crash_looping(hive, "alice"))
        await anyio.wait_all_tasks_blocked()  # the watcher of that approval sleeps now
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        assert await hive.approvals.query("pending") == []
        clock.advance(31)

        # The event comes once the rollback is proposed (noted, and approved if so set).
        (event,) = await wait_for(lambda: hive.eventlog.recent(type_prefix="approval.rollback"))
        assert event["automatic"] is True

        async def decided() -> Any:
            found = await hive.approvals.get(event["approval"]["id"])
            return found if mode == "propose" or found.status == "approved" else None

        rollback = await wait_for(decided)
        assert rollback.kind == "rollback"
        assert rollback.note.startswith(f"automatic rollback to {good[:12]}: alice not Ready")
        assert f"60 s after approval #{broken}" in rollback.note
        assert rollback.author == "hive-c0re <hive-c0re@hive>"
        if mode == "apply":
            assert (rollback.status, rollback.approver) == ("approved", AUTO_APPROVER)
            assert await alice_toml(hive) == b'description = "fine"\n'
        else:
            assert rollback.status == "pending"
            assert await alice_toml(hive) == b'description = "bad"\n'


async def _ready(hive: Hive, name: str) -> bool:
    status = await hive.records.status(name)
    return status is not None and status.ready
