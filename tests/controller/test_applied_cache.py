"""The hive's cache of applied `main`: hot paths answer without git and follow approves."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from controller.hive import Hive
from controller.protocol import connect_client
from controller.values import Approval
from tests.helpers import Clone, admin, hive_settings, holding_git_lock, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def approve_push(hive: Hive, clone: Clone, message: str, branch: str) -> str:
    sha = clone.commit_push(message, branch)
    approval = await wait_for(lambda: _pending_for(hive, sha))
    async with admin(hive) as client:
        result = await client.call("approve", id=approval.id)
    assert result["applied_sha"] == sha
    return sha


async def _pending_for(hive: Hive, sha: str) -> Approval | None:
    found = [a for a in await hive.approvals.query("pending") if a.sha == sha]
    return found[0] if found else None


async def test_whoami_status_and_send_answer_while_git_is_held_and_follow_approves(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        clone.write("agents/alice/prompt.md", "one\n")
        first = await approve_push(hive, clone, "alice", "feature")
        await wait_for(lambda: hive.layout.socket("alice").exists())
        alice = await connect_client(hive.layout.socket("alice"))
        async with alice, admin(hive) as operator:
            assert (await alice.call("whoami"))["prompt"] == "one\n"
            with holding_git_lock(hive.git), anyio.fail_after(2):
                assert (await alice.call("whoami"))["prompt"] == "one\n"
                status = await operator.call("status")
                assert (status["applied_sha"], status["agents"]) == (first, 2)
                await alice.call("send", to="hm1nd", body="hi")
            clone.write("agents/alice/prompt.md", "two\n")
            second = await approve_push(hive, clone, "alice again", "feature")
            assert (await alice.call("whoami"))["prompt"] == "two\n"
            assert (await operator.call("status"))["applied_sha"] == second
            assert hive.applied.sha == second == await hive.git.applied_head()
            assert dict(hive.applied.revs) == await hive.git.applied_revs()
