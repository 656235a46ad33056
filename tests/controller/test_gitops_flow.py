"""The GitOps core end to end: real pushes, the real daemon in-process, real processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.hive import PROPOSALS, Hive
from controller.protocol import ProtocolError, connect_client
from controller.values import Approval
from gitstore.plan import Action, PlanStep
from tests.helpers import Clone, admin, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def pending(hive: Hive) -> list[Approval]:
    return await hive.approvals.query("pending")


async def agent(hive: Hive, name: str) -> dict[str, Any] | None:
    async with admin(hive) as client:
        rows = await client.call("agents")
    return next((r for r in rows if r["name"] == name), None)


async def running_at(hive: Hive, name: str, rev: str | None = None) -> bool:
    row = await agent(hive, name)
    return bool(
        row
        and row["state"] == "running"
        and row["ready"]
        and (rev is None or row["observed_rev"] == rev)
    )


async def test_a_push_becomes_a_pending_approval_with_a_plan_on_watch(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        client = await connect_client(hive.layout.host_socket)
        async with client:
            events = client.stream("watch")
            hello = await events.__anext__()
            assert hello["type"] == "hello"
            clone.add_agent("alice")
            sha = clone.commit("add alice")
            clone.push("feature/alice")
            with anyio.fail_after(5):
                while True:
                    event = await events.__anext__()
                    if event["type"] == "approval.created":
                        break
            await events.aclose()
        approval = event["approval"]
        assert approval["sha"] == sha
        assert approval["ref"] == "refs/heads/feature/alice"
        assert approval["kind"] == "apply_commit"
        assert approval["status"] == "pending"
        assert approval["summary"] == "add alice"
        assert approval["author"] == "Op Erator <op@example.test>"
        assert {"agent": "alice", "action": "create"} in approval["plan"]
        assert approval["errors"] == []


async def test_a_newer_push_supersedes_the_pending_approval(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        first = clone.commit("alice v1")
        clone.push("feature")
        await wait_for(lambda: pending(hive))
        clone.add_agent("alice", "v2")
        second = clone.commit("alice v2")
        clone.push("feature")
        rows = await wait_for(lambda: _where(hive, lambda a: a.sha == second))
        assert rows[0].status == "pending"
        old = await _where(hive, lambda a: a.sha == first)
        assert old[0].status == "superseded"
        assert "moved to" in old[0].reason
        assert [a.sha for a in await pending(hive)] == [second]
        # An already-applied head makes no approval.
        await hive.proposal_queue.wait_idle()
        runs = hive.proposal_queue.runs
        git(clone.path, "push", "-q", "origin", f"{await hive.git.applied_head()}:refs/heads/noop")
        await wait_for(lambda: hive.proposal_queue.runs > runs)  # a run that saw the push
        await hive.proposal_queue.wait_idle()
        assert len(await pending(hive)) == 1


async def _where(hive: Hive, pred: Any) -> list[Approval]:
    return [a for a in await hive.approvals.query() if pred(a)]


async def test_approve_merges_and_the_agent_runs_with_the_new_rev(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        sha = clone.commit("add alice")
        clone.push()
        (approval,) = await wait_for(lambda: pending(hive))
        async with admin(hive) as client:
            result = await client.call("approve", id=approval.id)
            assert result["status"] == "approved"
            assert result["applied_sha"] == sha
            with pytest.raises(ProtocolError, match="not pending"):
                await client.call("approve", id=approval.id)
        rev = await hive.git.applied_agent("alice")
        assert rev is not None
        await wait_for(lambda: running_at(hive, "alice", rev.rev))
        await wait_for(lambda: (hive.layout.notes_dir("alice") / "env").exists())
        await wait_for(lambda: (hive.layout.notes_dir("hm1nd") / "env").exists())
        env = (hive.layout.notes_dir("alice") / "env").read_text().splitlines()
        env_map = dict(line.split("=", 1) for line in env if "=" in line)
        assert env_map["HIVE_AGENT"] == "alice"
        assert env_map["HIVE_SOCKET"] == str(hive.layout.socket("alice"))
        assert env_map["HIVE_STATE"] == str(hive.layout.notes_dir("alice"))
        assert env_map["CLAUDE_CONFIG_DIR"] == str(hive.layout.claude_dir("alice"))
        assert "HIVE_WEB_PORT" not in env_map
        assert env_map["HIVE_WEB_FD"].isdigit()  # the page socket, bound by hive-c0re
        assert "HIVE_AGENTS_DIR" not in env_map
        manager_env = (hive.layout.notes_dir("hm1nd") / "env").read_text()
        assert f"HIVE_AGENTS_DIR={hive.layout.agents_clone()}" in manager_env
        assert "HIVE_WEB_PORT" not in manager_env
        assert (hive.layout.agents_clone() / "agents" / "hm1nd" / "agent.toml").exists()


async def test_only_the_changed_agent_is_updated(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        clone.add_agent("bob")
        clone.commit("two agents")
        clone.push()
        (a1,) = await wait_for(lambda: pending(hive))
        await hive.approvals.approve(a1.id)
        await wait_for(lambda: running_at(hive, "alice"))
        await wait_for(lambda: running_at(hive, "bob"))
        for n in ("alice", "bob", "hm1nd"):
            await wait_for((hive.layout.notes_dir(n) / "started").exists)
        starts = {
            n: (hive.layout.notes_dir(n) / "started").read_text() for n in ("alice", "bob", "hm1nd")
        }
        runs_before = len(await hive.records.runs(limit=1000))
        clone.write("agents/bob/prompt.md", "be brief\n")
        clone.commit("bob gets a prompt")
        clone.push()
        (a2,) = await wait_for(lambda: pending(hive))
        assert PlanStep("bob", Action.UPDATE) in a2.plan
        assert PlanStep("alice", Action.NONE) in a2.plan
        await hive.approvals.approve(a2.id)
        bob_rev = await hive.git.applied_agent("bob")
        assert bob_rev is not None
        await wait_for(lambda: running_at(hive, "bob", bob_rev.rev))
        await hive.agent_queue.wait_idle()
        runs = (await hive.records.runs(limit=1000))[
            : len(await hive.records.runs(limit=1000)) - runs_before
        ]
        assert [(r["name"], r["action"]) for r in runs] == [("bob", "update")]
        assert (hive.layout.notes_dir("alice") / "started").read_text() == starts["alice"]
        assert (hive.layout.notes_dir("hm1nd") / "started").read_text() == starts["hm1nd"]
        started = hive.layout.notes_dir("bob") / "started"
        await wait_for(lambda: started.read_text() != starts["bob"])


async def test_removing_an_agent_destroys_it_and_keeps_its_notes(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        clone.commit("alice")
        clone.push()
        (a1,) = await wait_for(lambda: pending(hive))
        await hive.approvals.approve(a1.id)
        await wait_for(lambda: running_at(hive, "alice"))
        await wait_for(lambda: (hive.layout.notes_dir("alice") / "started").exists())
        pid = (await hive.runtime.observe("alice")).pid
        assert pid is not None
        clone.remove("agents/alice")
        clone.commit("bye alice")
        clone.push()
        (a2,) = await wait_for(lambda: pending(hive))
        assert PlanStep("alice", Action.DESTROY) in a2.plan
        await hive.approvals.approve(a2.id)
        await wait_for(lambda: _gone(hive, "alice"))
        await wait_for(lambda: not _alive(pid))
        assert (hive.layout.notes_dir("alice") / "started").exists()
        runs = await hive.records.runs("alice")
        assert runs[0]["action"] == "destroy"


async def _gone(hive: Hive, name: str) -> bool:
    return await agent(hive, name) is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    )


async def test_deny_records_the_reason_and_applies_nothing(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("mallory")
        clone.commit("let me in")
        clone.push("sneaky")
        (approval,) = await wait_for(lambda: pending(hive))
        head = await hive.git.applied_head()
        async with admin(hive) as client:
            denied = await client.call("deny", id=approval.id, reason="no thanks")
        assert denied["status"] == "denied"
        assert denied["reason"] == "no thanks"
        assert denied["decided_at"]
        assert (await hive.git.applied_head()) == head
        # The same head does not come back as a new approval.
        hive.proposal_queue.add(PROPOSALS)
        await hive.proposal_queue.wait_idle()
        assert await pending(hive) == []


async def test_an_invalid_spec_cannot_be_approved(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.write("agents/alice/agent.toml", 'description = "x"\nenabled = "yes"\n')
        clone.commit("bad")
        clone.push("bad")
        (approval,) = await wait_for(lambda: pending(hive))
        assert any("enabled" in e for e in approval.errors)
        head = await hive.git.applied_head()
        async with admin(hive) as client:
            with pytest.raises(ProtocolError) as info:
                await client.call("approve", id=approval.id)
        assert info.value.code == "invalid"
        assert "enabled" in info.value.message
        assert (await hive.git.applied_head()) == head
        assert (await hive.approvals.get(approval.id)).status == "failed"


async def test_a_conflicting_approval_fails_with_a_clear_error(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        clone.checkout("one", base)
        clone.add_agent("alice", "one")
        clone.commit("one")
        clone.push("one")
        clone.checkout("two", base)
        clone.add_agent("alice", "two")
        clone.commit("two")
        clone.push("two")
        approvals = await wait_for(lambda: _len2(hive))
        by_ref = {a.ref: a for a in approvals}
        await hive.approvals.approve(by_ref["refs/heads/one"].id)
        head = await hive.git.applied_head()
        async with admin(hive) as client:
            with pytest.raises(ProtocolError, match=r"conflicts in: agents/alice/agent\.toml"):
                await client.call("approve", id=by_ref["refs/heads/two"].id)
        assert (await hive.git.applied_head()) == head


async def _len2(hive: Hive) -> list[Approval] | None:
    rows = await pending(hive)
    return rows if len(rows) == 2 else None


async def test_two_concurrent_approvals_both_land(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        base = git(clone.path, "rev-parse", "HEAD")
        for name in ("alice", "bob"):
            clone.checkout(name, base)
            clone.add_agent(name)
            clone.commit(name)
            clone.push(name)
        approvals = await wait_for(lambda: _len2(hive))
        results: list[dict[str, Any]] = []

        async def approve(approval_id: int) -> None:
            async with admin(hive) as client:
                results.append(await client.call("approve", id=approval_id))

        async with anyio.create_task_group() as tg:
            for a in approvals:
                tg.start_soon(approve, a.id)
        assert {r["status"] for r in results} == {"approved"}
        assert set(await hive.git.applied_agents()) == {"alice", "bob", "hm1nd"}
        await wait_for(lambda: running_at(hive, "alice"))
        await wait_for(lambda: running_at(hive, "bob"))


async def test_decisions_and_lifecycle_land_in_the_audit_log(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.add_agent("alice")
        clone.commit_push("alice")
        (approval,) = await wait_for(lambda: pending(hive))
        async with admin(hive) as client:
            await client.call("approve", id=approval.id)
            await wait_for(lambda: running_at(hive, "alice"))
            await client.call("kill", name="alice")

            async def logged() -> list[str]:
                rows = await client.call("events", limit=50)
                types = [e["type"] for e in reversed(rows)]
                return types if "agent.kill" in types else []

            types = await wait_for(logged)
            only_approvals = await client.call("events", type="approval")
        assert types.index("approval.created") < types.index("approval.approved")
        assert types.index("approval.approved") < types.index("applied.moved")
        assert {"agent.hold", "agent.kill"} <= set(types)
        assert "message.sent" not in types and "agent.status" not in types
        assert {e["type"] for e in only_approvals} == {"approval.created", "approval.approved"}
        assert only_approvals[0]["approval"]["id"] == approval.id
