"""Decisions are compare-and-swap on `pending`: races over real host-socket connections."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.hive import Hive
from controller.protocol import ProtocolError
from controller.values import Approval
from tests.helpers import Clone, admin, git, hive_settings, running_hive, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

ROUNDS = 100


async def _pending(hive: Hive, n: int) -> list[Approval] | None:
    rows = await hive.approvals.query("pending", limit=n + 1)
    return rows if len(rows) == n else None


async def _decide(
    hive: Hive, cmd: str, approval_id: int, delay: float, outcomes: dict[str, Any]
) -> None:
    async with admin(hive) as client:
        await anyio.sleep(delay)
        try:
            outcomes[cmd] = await client.call(cmd, id=approval_id)
        except ProtocolError as exc:
            outcomes[cmd] = exc


async def test_approve_racing_deny_has_exactly_one_winner_and_applied_main_agrees(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        # One branch per round, each adding its own file outside agents/: the merges never
        # conflict and nothing has to be reconciled, so every round is a pure decision race.
        for i in range(ROUNDS):
            git(clone.path, "checkout", "-qB", f"race/{i}", base)
            clone.write(f"notes/{i}.md", f"round {i}\n")
            clone.commit(f"round {i}")
        git(clone.path, "push", "-q", "origin", *(f"race/{i}" for i in range(ROUNDS)))
        approvals = await wait_for(lambda: _pending(hive, ROUNDS), timeout=60)
        winners = {"approve": 0, "deny": 0, "deny lost while approve merged": 0}
        for i, approval in enumerate(sorted(approvals, key=lambda a: a.id)):
            before = await hive.git.applied_head()
            outcomes: dict[str, Any] = {}
            # Spread deny over the whole approve: well before it, together, while it
            # plans, while it merges, after it is recorded.
            offset = (i % 10 - 3) * 0.002
            async with anyio.create_task_group() as tg:
                tg.start_soon(_decide, hive, "approve", approval.id, max(-offset, 0), outcomes)
                tg.start_soon(_decide, hive, "deny", approval.id, max(offset, 0), outcomes)
            won = [cmd for cmd, out in outcomes.items() if not isinstance(out, ProtocolError)]
            assert len(won) == 1, (i, outcomes)
            lost = outcomes["deny" if won == ["approve"] else "approve"]
            assert lost.code == "conflict", (i, lost)
            winners[won[0]] += 1
            if won == ["approve"] and "is being approved" in lost.message:
                winners["deny lost while approve merged"] += 1
            final = await hive.approvals.get(approval.id)
            after = await hive.git.applied_head()
            if won == ["approve"]:
                assert final.status == "approved"
                assert final.applied_sha == after != before
                assert _contains(hive.git.applied_path, approval.sha, after)
            else:
                assert final.status == "denied"
                assert after == before
                assert not _contains(hive.git.applied_path, approval.sha, after)
        # Both sides won sometimes, and deny also landed mid-merge: the race was a race.
        assert all(winners.values()), winners


def _contains(repo: Path, ancestor: str, sha: str) -> bool:
    found = subprocess.run(
        ["git", "--git-dir", str(repo), "merge-base", "--is-ancestor", ancestor, sha],
        capture_output=True,
    )
    return found.returncode == 0


async def test_every_decision_on_a_decided_approval_is_a_conflict_naming_its_status(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        for name in ("one", "two", "three"):
            clone.checkout(name, base)
            clone.write(f"notes/{name}.md", name)
            clone.commit(name)
            clone.push(name)
        approvals = await wait_for(lambda: _pending(hive, 3))
        ids = {a.ref.rsplit("/", 1)[-1]: a.id for a in approvals}
        async with admin(hive) as client:
            await client.call("approve", id=ids["one"])
            await client.call("deny", id=ids["two"], reason="no")
            clone.checkout("three", base)
            clone.write("notes/three.md", "three again")
            clone.commit("three again")
            clone.push("three", force=True)
            await wait_for(
                lambda: _status_is(hive, ids["three"], "superseded"),
            )
            for name, status in (("one", "approved"), ("two", "denied"), ("three", "superseded")):
                for cmd in ("approve", "deny"):
                    with pytest.raises(ProtocolError) as info:
                        await client.call(cmd, id=ids[name])
                    assert info.value.code == "conflict"
                    assert f"approval #{ids[name]} is {status}, not pending" in info.value.message
            # The losers changed nothing: the record still says who decided and why.
            two = await hive.approvals.get(ids["two"])
            assert (two.status, two.reason) == ("denied", "no")


async def _status_is(hive: Hive, approval_id: int, status: str) -> bool:
    return bool((await hive.approvals.get(approval_id)).status == status)
