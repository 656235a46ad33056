"""Plans and approve-by-merge through the `GitStore` API, on real repos and pushes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from gitstore.errors import GitStoreError, MergeConflictError, RefMovedError
from gitstore.plan import Action
from gitstore.repos import MAIN
from gitstore.spec import parse_spec
from gitstore.store import GitStore
from tests.helpers import Clone, git, land

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "state")


@pytest.fixture
def clone(tmp_path: Path, store: GitStore) -> Clone:
    return Clone(tmp_path / "clone", store.proposed_path)


async def actions(store: GitStore, sha: str) -> dict[str, str]:
    return {s.agent: s.action.value for s in (await store.plan(sha)).steps}


async def approve(store: GitStore, sha: str, approval_id: int = 1, approver: str = "op") -> str:
    return await land(store, sha, approval_id, approver)


async def test_both_repos_start_from_one_commit_declaring_the_manager(store: GitStore) -> None:
    assert (await store.applied_head()) == (await store.proposed_heads())[MAIN]
    agents = await store.applied_agents()
    assert list(agents) == ["hm1nd"]
    assert agents["hm1nd"].spec is not None
    reopened = GitStore(store.proposed_path.parent)
    assert (await reopened.applied_head()) == (await store.applied_head())


async def test_plan_lists_create_update_and_none(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("add alice")
    clone.push()
    assert (await actions(store, sha)) == {"alice": "create", "hm1nd": "none"}
    await approve(store, sha)
    clone.add_agent("alice", "changed")
    sha2 = clone.commit("change alice")
    clone.push("feature")
    plan = await store.plan(sha2)
    assert {s.agent: s.action for s in plan.steps} == {"alice": Action.UPDATE, "hm1nd": Action.NONE}
    assert plan.changed == ("alice",)
    assert plan.errors == ()


async def test_plan_of_a_removed_agent_is_destroy(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    await approve(store, clone.commit_push("add"))
    clone.remove("agents/alice")
    sha = clone.commit("remove alice")
    clone.push()
    assert (await actions(store, sha))["alice"] == "destroy"


async def test_plan_is_computed_against_the_merge_result(
    store: GitStore, clone: Clone, tmp_path: Path
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice")
    await approve(store, clone.commit_push("add alice"))
    # A branch cut before alice existed must not plan to destroy her.
    clone.checkout("old", base)
    clone.add_agent("bob")
    sha = clone.commit("add bob")
    clone.push("old")
    plan = await store.plan(sha)
    assert {s.agent: s.action.value for s in plan.steps} == {
        "alice": "none",
        "bob": "create",
        "hm1nd": "none",
    }
    assert not plan.fast_forward


async def test_invalid_specs_unknown_keys_bad_names_and_removing_the_manager_are_errors(
    store: GitStore, clone: Clone
) -> None:
    clone.write("agents/alice/agent.toml", 'description = "x"\nflavour = "mint"\n')
    clone.write("agents/Bad_Name/agent.toml", 'description = "x"\n')
    clone.write("agents/carol/agent.toml", "description = \n")
    clone.write("agents/dave/prompt.md", "no toml here")
    clone.remove("agents/hm1nd")
    sha = clone.commit("broken")
    clone.push("broken")
    errors = "\n".join((await store.plan(sha)).errors)
    assert "agents/alice: flavour: unknown" in errors.replace(
        "Extra inputs are not permitted", "unknown"
    )
    assert "agents/Bad_Name: invalid agent name" in errors
    assert "agents/carol: agent.toml is not valid TOML" in errors
    assert "agents/dave: agent.toml is missing" in errors
    assert "the manager cannot be removed" in errors


async def test_allowed_tools_is_a_list_of_tool_rules_and_other_shapes_are_plan_errors(
    store: GitStore, clone: Clone
) -> None:
    clone.write("agents/ok/agent.toml", 'allowed_tools = ["Bash", "Bash(git log:*)"]\n')
    clone.write("agents/none/agent.toml", "allowed_tools = []\n")
    clone.write("agents/str/agent.toml", 'allowed_tools = "Bash"\n')
    clone.write("agents/num/agent.toml", "allowed_tools = [1]\n")
    clone.write("agents/comma/agent.toml", 'allowed_tools = ["Bash,Read"]\n')
    clone.write("agents/empty/agent.toml", 'allowed_tools = [""]\n')
    clone.write("agents/long/agent.toml", f'allowed_tools = ["{"x" * 201}"]\n')
    clone.write("agents/many/agent.toml", f"allowed_tools = {['Read'] * 65!r}\n".replace("'", '"'))
    sha = clone.commit_push("tools", "tools")
    errors = (await store.plan(sha)).errors
    by_agent = {e.split(":")[0].removeprefix("agents/"): e for e in errors}
    assert sorted(by_agent) == ["comma", "empty", "long", "many", "num", "str"]
    assert 'must be a list of tool names, e.g. ["Bash", "Read"]' in by_agent["str"]
    assert "valid string" in by_agent["num"]
    assert "is not a tool rule" in by_agent["comma"] and "no commas" in by_agent["comma"]
    assert "is not a tool rule" in by_agent["empty"]
    assert "at most 200 characters" in by_agent["long"]
    assert "at most 64 items" in by_agent["many"]
    spec = parse_spec(b'allowed_tools = ["Bash", "Bash(git log:*)"]\n')
    assert spec.allowed_tools == ("Bash", "Bash(git log:*)")


def _old_hashed_port(name: str) -> int:
    """The TCP port agent pages once had: a hash of the name into 8100-8999."""
    return 8100 + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 900


async def test_names_that_once_shared_a_hashed_port_plan_without_errors(
    store: GitStore, clone: Clone
) -> None:
    names: dict[int, str] = {}
    pair = None
    for i in range(5000):
        name = f"a{i}"
        port = _old_hashed_port(name)
        if port in names:
            pair = (names[port], name)
            break
        names[port] = name
    assert pair is not None
    for name in pair:
        clone.add_agent(name)
    sha = clone.commit("two agents that collided on a port")
    clone.push("ports")
    assert not (await store.plan(sha)).errors  # pages are sockets now: nothing to share


async def test_approve_fast_forwards_when_possible(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("add alice")
    clone.push("feature")
    new = await approve(store, sha, 7)
    assert new == sha == (await store.applied_head())
    assert "alice" in (await store.applied_agents())


async def test_approve_writes_a_merge_commit_recording_the_approval(
    store: GitStore, clone: Clone
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice")
    await approve(store, clone.commit_push("alice", "a"))
    clone.checkout("b", base)
    clone.add_agent("bob")
    sha = clone.commit("bob")
    clone.push("b")
    new = await approve(store, sha, 2, "vinzenz")
    commit = await store.describe(new)
    assert commit.parents[1] == sha
    assert "Approval: 2" in commit.message
    assert "Approved-by: vinzenz" in commit.message
    assert f"Proposed-sha: {sha}" in commit.message
    assert set(await store.applied_agents()) == {"alice", "bob", "hm1nd"}


async def test_a_conflict_is_a_clear_error_that_changes_nothing(
    store: GitStore, clone: Clone
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice", "one")
    await approve(store, clone.commit_push("one", "a"))
    before = await store.applied_head()
    clone.checkout("b", base)
    clone.add_agent("alice", "two")
    sha = clone.commit("two")
    clone.push("b")
    assert "conflicts in: agents/alice/agent.toml" in (await store.plan(sha)).errors[0]
    with pytest.raises(MergeConflictError, match=r"agents/alice/agent\.toml"):
        await approve(store, sha, 2)
    assert (await store.applied_head()) == before


async def test_the_ref_update_is_a_compare_and_swap(store: GitStore, clone: Clone) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice")
    sha = clone.commit("alice")
    clone.push("a")
    head = await store.applied_head()
    clone.checkout("b", base)
    clone.add_agent("bob")
    bob = clone.commit_push("bob", "b")
    git(store.applied_path, "fetch", "-q", str(store.proposed_path), bob)

    def someone_else_moves_main(new: str) -> None:
        # Between the merge and the ref update, another process moves applied main.
        git(store.applied_path, "update-ref", "refs/heads/main", bob)

    with pytest.raises(RefMovedError, match=f"applied main is at .*, not at {head[:12]}"):
        await store.approve(
            sha, base=head, approval_id=1, approver="op", intend=someone_else_moves_main
        )
    assert git(store.applied_path, "rev-parse", "main") == bob


async def test_concurrent_approvals_all_land_also_from_a_second_store(
    store: GitStore, clone: Clone
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    shas = []
    for name in ("alice", "bob", "carol", "dave"):
        clone.checkout(name, base)
        clone.add_agent(name)
        shas.append(clone.commit(name))
        clone.push(name)
    # A second store on the same repos stands for a second process: its own lock, so only
    # the flock and the compare-and-swap keep the merges from losing each other.
    other = GitStore(store.proposed_path.parent)
    async with anyio.create_task_group() as tg:
        for i, sha in enumerate(shas):
            tg.start_soon(approve, store if i % 2 else other, sha, i)
    assert set(await store.applied_agents()) == {"alice", "bob", "carol", "dave", "hm1nd"}


async def test_approving_an_applied_sha_again_is_refused(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("alice")
    clone.push("a")
    await approve(store, sha)
    with pytest.raises(GitStoreError, match="already applied"):
        await approve(store, sha)


async def test_an_unknown_sha_is_a_clear_error(store: GitStore) -> None:
    with pytest.raises(GitStoreError, match="not a commit"):
        await store.plan("not-a-sha")


async def test_a_runtime_can_refuse_names_it_cannot_hold(store: GitStore, clone: Clone) -> None:
    clone.add_agent("averyverylongname")
    clone.add_agent("short")
    sha = clone.commit_push("two agents", "names")

    def nine_chars(name: str) -> str | None:
        return f"{name} is longer than 9 characters; rename it" if len(name) > 9 else None

    errors = (await store.plan(sha, nine_chars)).errors
    assert errors == (
        "agents/averyverylongname: averyverylongname is longer than 9 characters; rename it",
    )
