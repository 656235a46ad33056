"""The `GitStore` API on real repos: frozen values, one lock, our own errors, a free loop."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from gitstore.errors import GitStoreError, UnknownRevError
from gitstore.plan import Action
from gitstore.repos import MAIN
from gitstore.store import GitStore, clone_repository
from tests.helpers import Clone, admin, hive_settings, holding_git_lock, running_hive

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "state")


@pytest.fixture
def clone(tmp_path: Path, store: GitStore) -> Clone:
    return Clone(tmp_path / "clone", store.proposed_path)


def foreign_objects(value: object, path: str = "result") -> Iterator[str]:
    """Where in `value` something is not a plain or frozen value of ours (e.g. pygit2's)."""
    if value is None or isinstance(value, str | bytes | int | float | bool):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from foreign_objects(k, f"{path} key")
            yield from foreign_objects(v, f"{path}[{k!r}]")
    elif isinstance(value, tuple | frozenset):
        for i, v in enumerate(value):
            yield from foreign_objects(v, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not type(value).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            yield f"{path}: {type(value).__name__} is not frozen"
        for f in dataclasses.fields(value):
            yield from foreign_objects(getattr(value, f.name), f"{path}.{f.name}")
    elif type(value).__module__.startswith(("gitstore.", "pydantic")) or hasattr(
        value, "model_config"
    ):
        return  # our enums (Action) and frozen pydantic specs
    else:
        yield f"{path}: {type(value).__module__}.{type(value).__name__}"


async def test_every_public_method_is_async_and_no_repository_is_exposed(
    store: GitStore,
) -> None:
    public = {n: getattr(store, n) for n in dir(store) if not n.startswith("_")}
    methods = {n for n, v in public.items() if callable(v)}
    assert {"applied_head", "applied_revs", "plan", "approve", "describe"} <= methods
    assert [n for n in methods if not inspect.iscoroutinefunction(public[n])] == []
    data = {n: v for n, v in public.items() if n not in methods}
    assert {n: type(v).__name__ for n, v in data.items()} == {
        "applied_path": "PosixPath",
        "proposed_path": "PosixPath",
    }


async def test_reads_return_frozen_values_never_pygit2_objects(
    store: GitStore, clone: Clone
) -> None:
    clone.add_agent("alice")
    clone.write("agents/alice/prompt.md", "be brief\n")
    sha = clone.commit_push("add alice", "feature")
    head = await store.applied_head()
    plan = await store.plan(sha)
    assert {s.agent: s.action for s in plan.steps} == {"alice": Action.CREATE, "hm1nd": Action.NONE}
    info = await store.describe(sha)
    assert (info.summary, info.author, info.parents) == (
        "add alice",
        "Op Erator <op@example.test>",
        (head,),
    )
    intents: list[str] = []
    new = await store.approve(
        sha, base=plan.base, approval_id=1, approver="op", intend=intents.append
    )
    assert intents == [new]
    alice = await store.applied_agent("alice")
    assert alice is not None and alice.files["prompt.md"] == b"be brief\n"
    results: dict[str, object] = {
        "applied_head": await store.applied_head(),
        "applied_revs": await store.applied_revs(),
        "applied_state": await store.applied_state(),
        "applied_agents": await store.applied_agents(),
        "applied_agent": alice,
        "old_agents": await store.applied_agents(head),
        "proposed_heads": await store.proposed_heads(),
        "is_applied": await store.is_applied(sha),
        "applied_among": await store.applied_among([sha, head]),
        "resolve_proposed": await store.resolve_proposed(sha[:10]),
        "describe": info,
        "plan": plan,
        "approve": new,
        "commit_files": await store.commit_files(
            "spawn/bob", {"agents/bob/agent.toml": b'description = "b"\n'}, "bob", ("m", "m@x")
        ),
        "diffs": await store.approval_diffs([(head, sha)]),
    }
    assert [p for k, v in results.items() for p in foreign_objects(v, k)] == []
    assert results["applied_head"] == new == sha
    assert results["applied_among"] == frozenset({sha, head})
    assert results["resolve_proposed"] == sha
    assert (await store.proposed_heads())[MAIN] == head
    assert set(await store.applied_revs()) == {"alice", "hm1nd"}
    assert set(await store.applied_agents(head)) == {"hm1nd"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.message = "changed"  # type: ignore[misc]
    # A returned dict is the caller's own: changing it changes nothing in the store.
    revs = await store.applied_revs()
    revs.clear()
    assert "alice" in await store.applied_revs()


async def test_errors_come_back_as_gitstore_errors(store: GitStore) -> None:
    head = await store.applied_head()
    unknown = [
        store.describe("0" * 40),
        store.resolve_proposed("not-hex"),
        store.applied_agents("0" * 40),
        store.applied_agent("hm1nd", "1234567"),
        store.point_branch("x", "0" * 40),
        store.is_applied("zz"),
        store.plan("0" * 40),
        store.approve("0" * 40, base=head, approval_id=1, approver="op", intend=lambda new: None),
        store.move_applied(head, "0" * 40, "test"),
    ]
    for call in unknown:
        with pytest.raises(UnknownRevError):
            await call
    # pygit2's own errors (here: an invalid ref name) are mapped at the boundary too.
    with pytest.raises(GitStoreError, match="not valid"):
        await store.point_branch("bad..name", head)
    with pytest.raises(GitStoreError, match="already applied"):
        await store.approve(head, base=head, approval_id=1, approver="op", intend=lambda new: None)


async def test_a_second_caller_waits_for_the_lock_while_the_loop_runs_on(
    store: GitStore,
) -> None:
    head = await store.applied_head()
    got: list[str] = []
    with holding_git_lock(store) as release:
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                got.append(await store.applied_head())

            tg.start_soon(read)
            # The waiting call sits in its worker thread: the loop keeps turning.
            with anyio.fail_after(2):
                for _ in range(200):
                    await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            assert got == []  # serialised: not a read beside the lock holder
            release.set()
    assert got == [head]


async def test_a_clone_of_proposed_needs_no_lock(store: GitStore, tmp_path: Path) -> None:
    with holding_git_lock(store), anyio.fail_after(10):
        await clone_repository(store.proposed_path, tmp_path / "agents")
    assert (tmp_path / "agents" / "agents" / "hm1nd" / "agent.toml").exists()
    with pytest.raises(GitStoreError, match="cannot clone"):
        await clone_repository(tmp_path / "nowhere.git", tmp_path / "again")


async def test_the_host_socket_answers_status_while_git_is_held(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        head = await hive.git.applied_head()
        rows: list[list[dict[str, object]]] = []
        async with admin(hive) as fast, admin(hive) as slow:
            with holding_git_lock(hive.git) as release:
                async with anyio.create_task_group() as tg:

                    async def agents() -> None:
                        rows.append(await slow.call("agents"))

                    tg.start_soon(agents)
                    with anyio.fail_after(2):
                        status = await fast.call("status")
                    assert (status["applied_sha"], status["agents"]) == (head, 1)
                    # `agents` needs git: it waits for the lock in a worker thread.
                    await anyio.wait_all_tasks_blocked()
                    assert rows == []
                    release.set()
        assert [r["name"] for r in rows[0]] == ["hm1nd"]
