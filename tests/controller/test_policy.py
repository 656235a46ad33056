"""hive.toml: the hive's policy in the tree, validated strictly, errors on the approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.errors import InvalidError
from controller.hive import Hive
from gitstore.policy import InvalidPolicyError, Policy, parse_policy
from gitstore.spec import InvalidSpecError, parse_spec
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("budget_usd_per_dai = 5\n", "budget_usd_per_dai: unknown key"),
        ('max_turns_per_hour = "ten"\n', "max_turns_per_hour: Input should be a valid integer"),
        ("max_turns_per_hour = -1\n", "max_turns_per_hour: Input should be greater than or equal"),
        ("budget_usd_per_day = 0\n", "budget_usd_per_day: Input should be greater than 0"),
        ("budget_usd_per_day = 1e12\n", "budget_usd_per_day: Input should be less than or equal"),
        ("budget_usd_per_day = nan\n", "budget_usd_per_day: Input should be a finite number"),
        ("[rate]\nsend_per_minute = 1000000\n", "rate.send_per_minute: Input should be less"),
        ("[rate]\nsends = 3\n", "rate.sends: unknown key"),
        ('auto_rollback = "yes"\n', "auto_rollback: Input should be 'propose', 'apply' or 'off'"),
        ("ready_timeout_seconds = 0\n", "ready_timeout_seconds: Input should be greater"),
        ('[[notify]]\nkind = "pager"\nurl_env = "X"\n', "notify[0].kind"),
        ("max_turns_per_hour = [\n", "hive.toml is not valid TOML"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nests arrays or tables too deeply"),
    ],
)
def test_bad_policies_are_refused_with_a_message_naming_the_key(text: str, problem: str) -> None:
    with pytest.raises(InvalidPolicyError) as info:
        parse_policy(text.encode())
    assert problem in str(info.value)


def test_an_agent_toml_overrides_the_hives_limits_key_by_key() -> None:
    policy = parse_policy(
        b"budget_usd_per_day = 2.5\nmax_turns_per_hour = 30\n[rate]\nsend_per_minute = 10\n"
    )
    spec = parse_spec(
        b'description = "x"\nmax_turns_per_hour = 5\n[rate]\nask_operator_per_hour = 1\n'
    )
    limits = policy.for_agent(spec)
    assert (limits.budget_usd_per_day, limits.max_turns_per_hour) == (2.5, 5)
    assert (limits.send_per_minute, limits.ask_operator_per_hour) == (10, 1)
    assert limits.max_tool_calls_per_turn == Policy().max_tool_calls_per_turn
    assert Policy().for_agent(None).budget_usd_per_day is None  # no cap unless set
    with pytest.raises(InvalidSpecError, match="max_turns_per_hour"):
        parse_spec(b"max_turns_per_hour = 0\n")


async def pending_for(hive: Hive, sha: str) -> Any:
    return [a for a in await hive.approvals.query("pending") if a.sha == sha]


async def test_a_bad_hive_toml_is_an_error_on_its_approval_and_cannot_be_approved(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.write("hive.toml", "budget_usd_per_day = -3\nmistake = true\n")
        sha = clone.commit_push("a bad policy", "bad")
        (approval,) = await wait_for(lambda: pending_for(hive, sha))
        assert approval.errors == (
            "hive.toml: budget_usd_per_day: Input should be greater than 0; mistake: unknown key",
        )
        async with admin(hive) as client:
            (shown,) = await client.call("approvals")
        assert shown["errors"] == list(approval.errors)
        with pytest.raises(InvalidError, match=r"hive\.toml: budget"):
            await hive.approvals.approve(approval.id)
        assert hive.policy == Policy()


async def test_an_approved_hive_toml_is_the_policy_the_daemon_reads(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        clone = Clone(short_dir / "clone", hive.git.proposed_path)
        clone.write("hive.toml", "hive_budget_usd_per_day = 40\n[rate]\nsend_per_minute = 7\n")
        clone.add_agent("alice", enabled="false", max_turns_per_hour="3")
        sha = clone.commit_push("policy")
        (approval,) = await wait_for(lambda: pending_for(hive, sha))
        assert approval.errors == ()
        await hive.approvals.approve(approval.id)
        assert hive.policy.hive_budget_usd_per_day == 40
        assert (await hive.git.applied_policy())[0] == hive.policy
        limits = await hive.limits_for("alice")
        assert (limits.send_per_minute, limits.max_turns_per_hour) == (7, 3)
        assert (await hive.limits_for("hm1nd")).max_turns_per_hour == 120
