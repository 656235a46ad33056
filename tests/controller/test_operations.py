"""The operations module: typed, frozen results in process, the contract's JSON on the wire,
and the manager's change requests with hostile text."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import anyio
import pytest

from controller.hive import Hive
from controller.operations import Operations
from controller.protocol import connect_client
from controller.values import AgentRow, Approval, Message, Question, Queued, Sent, Status
from gitstore.plan import Action, PlanStep
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio

AGENT_KEYS = [
    "name",
    "role",
    "enabled",
    "description",
    "model",
    "state",
    "ready",
    "reason",
    "stalled",
    "desired_rev",
    "observed_rev",
    "harness_version",
    "hold",
    "message",
    "error",
    "turn",
    "turn_reason",
    "spend_today_usd",
    "spend_total_usd",
    "tokens_today",
    "tokens_total",
]
APPROVAL_KEYS = [
    "id",
    "kind",
    "ref",
    "sha",
    "base",
    "summary",
    "author",
    "note",
    "status",
    "plan",
    "errors",
    "reason",
    "approver",
    "applied_sha",
    "created_at",
    "decided_at",
    "mergeable",
    "merging",
    "merge_base",
    "touched",
    "planned_at",
]
MESSAGE_KEYS = [
    "id",
    "sender",
    "recipient",
    "kind",
    "body",
    "created_at",
    "delivered_at",
    "acked_at",
]
QUESTION_KEYS = [
    "id",
    "asker",
    "question",
    "options",
    "multi",
    "status",
    "answer",
    "created_at",
    "expires_at",
    "decided_at",
    "kind",
]


async def _apply_alice(hive: Hive, ops: Operations, root: Path) -> Approval:
    clone = Clone(root / "clone", hive.git.proposed_path)
    clone.add_agent("alice", "reads things")
    sha = clone.commit_push("add alice", "feature/alice")
    (pending,) = await wait_for(lambda: ops.approvals("pending"))
    assert isinstance(pending, Approval) and pending.sha == sha
    return await ops.approve(pending.id)


async def test_operations_hand_out_frozen_typed_values(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        ops = Operations(hive)
        approved = await _apply_alice(hive, ops, short_dir)
        assert approved.status == "approved" and approved.applied_sha == hive.applied.sha
        assert PlanStep("alice", Action.CREATE) in approved.plan
        assert isinstance(approved.plan, tuple) and isinstance(approved.errors, tuple)
        with pytest.raises(dataclasses.FrozenInstanceError):
            approved.status = "pending"  # type: ignore[misc]

        status = await ops.status()
        assert isinstance(status, Status)
        assert (status.applied_sha, status.agents, status.pending_approvals) == (
            hive.applied.sha,
            2,
            0,
        )
        rows = await ops.agents()
        assert [type(r) for r in rows] == [AgentRow, AgentRow]
        assert [(r.name, r.role) for r in rows] == [("alice", "agent"), ("hm1nd", "manager")]
        await hive.agent_queue.wait_idle()
        killed = await ops.lifecycle("alice", "kill")
        assert isinstance(killed, AgentRow)
        assert (killed.hold, killed.state) == ("killed", "stopped")
        assert await ops.reconcile("alice") == Queued(("alice",))

        sent = await ops.send("operator", "alice", "hello")
        assert isinstance(sent, Sent)
        (message,) = await ops.messages("alice")
        assert isinstance(message, Message)
        assert (message.id, message.sender, message.body) == (sent.id, "operator", "hello")

        asked = await ops.ask("hm1nd", "which one?", ["a", "b"], multi=True)
        assert isinstance(asked, Question) and asked.options == ("a", "b")
        answered = await ops.answer(asked.id, ["b", "a"])
        assert (answered.status, answered.answer) == ("answered", ("a", "b"))


async def test_the_sockets_keep_the_contracts_json_keys(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        ops = Operations(hive)
        await _apply_alice(hive, ops, short_dir)
        await ops.send("operator", "alice", "hello")
        await ops.ask("hm1nd", "free text?")
        async with admin(hive) as client:
            agents = await client.call("agents")
            approvals = await client.call("approvals")
            messages = await client.call("messages")
            questions = await client.call("questions")
            status = await client.call("status")
            sent = await client.call("send", to="alice", body="again")
            queued = await client.call("reconcile", name="alice")
        assert [list(r) for r in agents] == [AGENT_KEYS, AGENT_KEYS]
        assert list(approvals[0]) == APPROVAL_KEYS
        assert {"agent": "alice", "action": "create"} in approvals[0]["plan"]
        assert list(messages[0]) == MESSAGE_KEYS
        assert list(questions[0]) == QUESTION_KEYS and questions[0]["options"] == []
        assert list(status) == [
            "version",
            "harness_version",
            "runtime",
            "sandbox",
            "applied_sha",
            "agents",
            "pending_approvals",
            "pending_questions",
            "alarm",
            "proposed_main",
        ]
        assert list(sent) == ["id"] and queued == {"queued": ["alice"]}
        async with await connect_client(hive.layout.socket("hm1nd")) as manager:
            whoami = await manager.call("whoami")
        assert whoami["allowed_tools"] == [] and whoami["role"] == "manager"


async def test_a_spawn_description_with_control_characters_becomes_a_valid_approval(
    short_dir: Path,
) -> None:
    description = 'says "hi"\nthen\r\nrings \x07 and\ttabs \\ back\x1b[0m'
    async with running_hive(hive_settings(short_dir)) as hive:
        await wait_for(hive.layout.socket("hm1nd").exists)
        async with await connect_client(hive.layout.socket("hm1nd")) as manager:
            approval = await manager.call(
                "request_spawn", name="scout", description=description, model="claude-x"
            )
        assert (approval["kind"], approval["ref"]) == ("spawn", "refs/heads/spawn/scout")
        assert approval["errors"] == []
        assert {"agent": "scout", "action": "create"} in approval["plan"]
        shown = await anyio.run_process(
            ["git", "show", "spawn/scout:agents/scout/agent.toml"], cwd=hive.git.proposed_path
        )
        assert tomllib.loads(shown.stdout.decode()) == {
            "description": description,
            "model": "claude-x",
        }
