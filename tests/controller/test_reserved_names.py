"""Names that mean someone else (the human, the controller) are no agent's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.broker import OPERATOR
from controller.hive import Hive
from controller.protocol import ProtocolError, connect_client
from gitstore.names import RESERVED_NAMES, InvalidNameError, check_name
from gitstore.store import GitStore
from tests.helpers import Clone, git, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


def test_every_name_the_broker_sends_as_is_reserved() -> None:
    assert OPERATOR in RESERVED_NAMES
    assert "hive-c0re" in RESERVED_NAMES


@pytest.mark.parametrize("name", ["operator", "hive-c0re"])
def test_check_name_refuses_a_reserved_name(name: str) -> None:
    with pytest.raises(InvalidNameError, match=f"agent name '{name}' is reserved"):
        check_name(name)


async def test_a_tree_declaring_an_agent_named_operator_is_a_plan_error(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.proposed_path)
    clone.add_agent("operator")
    clone.add_agent("hive-c0re")
    plan = await store.plan(clone.commit_push("impostors", "impostors"))
    assert plan.errors == (
        "agents/hive-c0re: agent name 'hive-c0re' is reserved (it names the controller): "
        "choose another",
        "agents/operator: agent name 'operator' is reserved (it names the human operator): "
        "choose another",
    )


async def manager_call(hive: Hive, cmd: str, **args: object) -> object:
    await wait_for(hive.layout.socket("hm1nd").exists)
    async with await connect_client(hive.layout.socket("hm1nd")) as manager:
        return await manager.call(cmd, **args)


async def test_request_spawn_of_a_reserved_name_is_refused_and_no_branch_is_made(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        with pytest.raises(ProtocolError, match="'operator' is reserved"):
            await manager_call(hive, "request_spawn", name="operator", description="me")
        branches = git(hive.git.proposed_path, "branch", "--format=%(refname)")
        assert "spawn/operator" not in branches
