from __future__ import annotations

import threading
from pathlib import Path

import pygit2
import pytest

from gitstore.plan import Action, MergeConflictError, approve_merge, compute_plan
from gitstore.repos import MAIN, GitStore, GitStoreError
from gitstore.spec import port_for
from tests.helpers import Clone, git


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "state")


@pytest.fixture
def clone(tmp_path: Path, store: GitStore) -> Clone:
    return Clone(tmp_path / "clone", store.proposed_path)


def actions(store: GitStore, sha: str) -> dict[str, str]:
    return {s.agent: s.action.value for s in compute_plan(store, sha).steps}


def test_both_repos_start_from_one_commit_declaring_the_manager(store: GitStore) -> None:
    assert store.applied_head() == store.proposed_heads()[MAIN]
    agents = store.applied_agents()
    assert list(agents) == ["hm1nd"]
    assert agents["hm1nd"].spec is not None
    reopened = GitStore(store.proposed_path.parent)
    assert reopened.applied_head() == store.applied_head()


def test_plan_lists_create_update_and_none(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("add alice")
    clone.push()
    assert actions(store, sha) == {"alice": "create", "hm1nd": "none"}
    approve_merge(store, sha, expected_base=None, approval_id=1, approver="op")
    clone.add_agent("alice", "changed")
    sha2 = clone.commit("change alice")
    clone.push("feature")
    plan = compute_plan(store, sha2)
    assert {s.agent: s.action for s in plan.steps} == {"alice": Action.UPDATE, "hm1nd": Action.NONE}
    assert plan.changed == ("alice",)
    assert plan.errors == ()


def test_plan_of_a_removed_agent_is_destroy(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    approve_merge(
        store,
        clone.commit_push("add"),
        expected_base=None,
        approval_id=1,
        approver="op",
    )
    clone.remove("agents/alice")
    sha = clone.commit("remove alice")
    clone.push()
    assert actions(store, sha)["alice"] == "destroy"


def test_plan_is_computed_against_the_merge_result(
    store: GitStore, clone: Clone, tmp_path: Path
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice")
    approve_merge(
        store,
        clone.commit_push("add alice"),
        expected_base=None,
        approval_id=1,
        approver="op",
    )
    # A branch cut before alice existed must not plan to destroy her.
    clone.checkout("old", base)
    clone.add_agent("bob")
    sha = clone.commit("add bob")
    clone.push("old")
    plan = compute_plan(store, sha)
    assert {s.agent: s.action.value for s in plan.steps} == {
        "alice": "none",
        "bob": "create",
        "hm1nd": "none",
    }
    assert not plan.fast_forward


def test_invalid_specs_unknown_keys_bad_names_and_removing_the_manager_are_errors(
    store: GitStore, clone: Clone
) -> None:
    clone.write("agents/alice/agent.toml", 'description = "x"\nflavour = "mint"\n')
    clone.write("agents/Bad_Name/agent.toml", 'description = "x"\n')
    clone.write("agents/carol/agent.toml", "description = \n")
    clone.write("agents/dave/prompt.md", "no toml here")
    clone.remove("agents/hm1nd")
    sha = clone.commit("broken")
    clone.push("broken")
    errors = "\n".join(compute_plan(store, sha).errors)
    assert "agents/alice: flavour: unknown" in errors.replace(
        "Extra inputs are not permitted", "unknown"
    )
    assert "agents/Bad_Name: invalid agent name" in errors
    assert "agents/carol: agent.toml is not valid TOML" in errors
    assert "agents/dave: agent.toml is missing" in errors
    assert "the manager cannot be removed" in errors


def test_port_collisions_are_plan_errors_asking_to_rename(store: GitStore, clone: Clone) -> None:
    names: dict[int, str] = {}
    pair = None
    for i in range(5000):
        name = f"a{i}"
        port = port_for(name)
        if port in names:
            pair = (names[port], name)
            break
        names[port] = name
    assert pair is not None
    for name in pair:
        clone.add_agent(name)
    sha = clone.commit("two agents, one port")
    clone.push("ports")
    errors = compute_plan(store, sha).errors
    assert any("rename one of them" in e and pair[0] in e and pair[1] in e for e in errors)


def test_approve_fast_forwards_when_possible(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("add alice")
    clone.push("feature")
    new = approve_merge(
        store, sha, expected_base=store.applied_head(), approval_id=7, approver="op"
    )
    assert new == sha == store.applied_head()
    assert "alice" in store.applied_agents()


def test_approve_writes_a_merge_commit_recording_the_approval(
    store: GitStore, clone: Clone
) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice")
    approve_merge(
        store,
        clone.commit_push("alice", "a"),
        expected_base=None,
        approval_id=1,
        approver="op",
    )
    clone.checkout("b", base)
    clone.add_agent("bob")
    sha = clone.commit("bob")
    clone.push("b")
    new = approve_merge(store, sha, expected_base=None, approval_id=2, approver="vinzenz")
    commit = store.applied.get(new)
    assert isinstance(commit, pygit2.Commit)
    assert [str(p) for p in commit.parent_ids][1] == sha
    assert "Approval: 2" in commit.message
    assert "Approved-by: vinzenz" in commit.message
    assert f"Proposed-sha: {sha}" in commit.message
    assert set(store.applied_agents()) == {"alice", "bob", "hm1nd"}


def test_a_conflict_is_a_clear_error_that_changes_nothing(store: GitStore, clone: Clone) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    clone.add_agent("alice", "one")
    approve_merge(
        store,
        clone.commit_push("one", "a"),
        expected_base=None,
        approval_id=1,
        approver="op",
    )
    before = store.applied_head()
    clone.checkout("b", base)
    clone.add_agent("alice", "two")
    sha = clone.commit("two")
    clone.push("b")
    assert "conflicts in: agents/alice/agent.toml" in compute_plan(store, sha).errors[0]
    with pytest.raises(MergeConflictError, match=r"agents/alice/agent\.toml"):
        approve_merge(store, sha, expected_base=None, approval_id=2, approver="op")
    assert store.applied_head() == before


def test_the_ref_update_is_a_compare_and_swap(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("alice")
    clone.push("a")
    stale = "0" * 40
    with pytest.raises(GitStoreError, match="moved"):
        approve_merge(store, sha, expected_base=stale, approval_id=1, approver="op")
    assert "alice" not in store.applied_agents()


def test_concurrent_approvals_both_land(store: GitStore, clone: Clone) -> None:
    base = git(clone.path, "rev-parse", "HEAD")
    shas = []
    for name in ("alice", "bob", "carol", "dave"):
        clone.checkout(name, base)
        clone.add_agent(name)
        shas.append(clone.commit(name))
        clone.push(name)
    errors: list[Exception] = []

    def approve(i: int, sha: str) -> None:
        try:
            approve_merge(store, sha, expected_base=None, approval_id=i, approver="op")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(i, s)) for i, s in enumerate(shas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(store.applied_agents()) == {"alice", "bob", "carol", "dave", "hm1nd"}


def test_approving_an_applied_sha_again_is_refused(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    sha = clone.commit("alice")
    clone.push("a")
    approve_merge(store, sha, expected_base=None, approval_id=1, approver="op")
    with pytest.raises(GitStoreError, match="already applied"):
        approve_merge(store, sha, expected_base=None, approval_id=1, approver="op")


def test_an_unknown_sha_is_a_clear_error(store: GitStore) -> None:
    with pytest.raises(GitStoreError, match="not a commit"):
        compute_plan(store, "not-a-sha")


def test_a_runtime_can_refuse_names_it_cannot_hold(store: GitStore, clone: Clone) -> None:
    clone.add_agent("averyverylongname")
    clone.add_agent("short")
    sha = clone.commit_push("two agents", "names")

    def nine_chars(name: str) -> str | None:
        return f"{name} is longer than 9 characters; rename it" if len(name) > 9 else None

    errors = compute_plan(store, sha, nine_chars).errors
    assert errors == (
        "agents/averyverylongname: averyverylongname is longer than 9 characters; rename it",
    )
