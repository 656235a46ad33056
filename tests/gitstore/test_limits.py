"""Size and shape limits, and trees no plan may choke on, through `GitStore.plan`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitstore.limits import Limits
from gitstore.spec import InvalidSpecError, parse_spec
from gitstore.store import GitStore
from tests.helpers import Clone, git

pytestmark = pytest.mark.anyio

NESTED_TOML = "description = " + "[" * 1000 + "]" * 1000 + "\n"


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore(tmp_path / "state", Limits(prompt_bytes=1000, agent_files=5, tree_depth=8))


@pytest.fixture
def clone(tmp_path: Path, store: GitStore) -> Clone:
    return Clone(tmp_path / "clone", store.proposed_path)


def raw_object(repo: Path, kind: str, data: bytes) -> str:
    """Write an object as given, unchecked (`--literally`): what a hand-crafted push could
    carry, though git and libgit2 never write such a tree themselves."""
    out = subprocess.run(
        ["git", "hash-object", "--literally", "-t", kind, "-w", "--stdin"],
        cwd=repo,
        input=data,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


def tree_entries(repo: Path, rev: str) -> bytes:
    """The raw entries of the tree at `rev`."""
    return subprocess.run(
        ["git", "cat-file", "tree", rev], cwd=repo, capture_output=True, check=True
    ).stdout


def entry(mode: str, name: str, sha: str) -> bytes:
    return f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)


def crafted_commit(store: GitStore, agents_entries: bytes) -> str:
    """A commit on applied `main` whose `agents/` tree is `agents_entries` (raw)."""
    repo = store.proposed_path
    agents = raw_object(repo, "tree", agents_entries)
    root = tree_entries(repo, "main^{tree}")
    top = b""
    rest = root
    while rest:
        head, _, tail = rest.partition(b"\0")
        sha, rest = tail[:20].hex(), tail[20:]
        mode, _, name = head.decode().partition(" ")
        top += entry(mode, name, agents if name == "agents" else sha)
    tree = raw_object(repo, "tree", top)
    return git(repo, "commit-tree", tree, "-p", "main", "-m", "crafted")


def with_agent(store: GitStore, mode: str, name: str, sha: str) -> bytes:
    """Proposed main's `agents/` entries plus one more, in git's order (by name)."""
    return tree_entries(store.proposed_path, "main:agents") + entry(mode, name, sha)


def test_a_toml_nested_a_thousand_deep_is_an_invalid_spec_not_a_recursion_error() -> None:
    assert len(NESTED_TOML) < 2100
    with pytest.raises(InvalidSpecError, match="too deeply"):
        parse_spec(NESTED_TOML.encode())


async def test_a_deeply_nested_agent_toml_is_that_agents_plan_error(
    store: GitStore, clone: Clone
) -> None:
    clone.write("agents/deep/agent.toml", NESTED_TOML)
    plan = await store.plan(clone.commit_push("deep", "deep"))
    assert plan.errors == ("agents/deep: agent.toml nests arrays or tables too deeply",)


async def test_a_tree_entry_with_a_slash_in_its_name_is_a_plan_error(store: GitStore) -> None:
    blob = raw_object(store.proposed_path, "blob", b'description = "x"\n')
    inner = raw_object(
        store.proposed_path,
        "tree",
        entry("100644", "agent.toml", blob) + entry("100644", "x/y", blob),
    )
    plan = await store.plan(crafted_commit(store, with_agent(store, "40000", "slashy", inner)))
    assert any("'x/y' is not a file name" in e for e in plan.errors), plan.errors
    assert [s.agent for s in plan.steps if s.action.value == "create"] == ["slashy"]


async def test_an_agent_named_with_a_slash_is_a_plan_error(store: GitStore) -> None:
    blob = raw_object(store.proposed_path, "blob", b'description = "x"\n')
    inner = raw_object(store.proposed_path, "tree", entry("100644", "agent.toml", blob))
    plan = await store.plan(crafted_commit(store, with_agent(store, "40000", "x/y", inner)))
    assert plan.errors and all("x/y" in e for e in plan.errors), plan.errors


async def test_a_description_over_its_limit_is_a_plan_error(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state", Limits(description_chars=100))
    clone = Clone(tmp_path / "clone", store.proposed_path)
    clone.add_agent("alice", "x" * 101)
    plan = await store.plan(clone.commit_push("long", "long"))
    assert plan.errors == (
        "agents/alice: description is 101 characters, more than the limit of 100",
    )


async def test_a_large_agent_toml_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state")
    clone = Clone(tmp_path / "clone", store.proposed_path)
    # 50 MB of description by default settings would be approved before the limits.
    clone.add_agent("alice", "x" * (Limits().agent_toml_bytes + 1))
    plan = await store.plan(clone.commit_push("huge", "huge"))
    assert len(plan.errors) == 1
    assert "agents/alice: agent.toml is 65554 bytes, more than the limit of 65536" in plan.errors


async def test_a_prompt_over_its_limit_is_a_plan_error(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    clone.write("agents/alice/prompt.md", "p" * 1001)
    plan = await store.plan(clone.commit_push("prompt", "prompt"))
    assert plan.errors == ("agents/alice: prompt.md is 1001 bytes, more than the limit of 1000",)


async def test_too_many_files_under_an_agent_is_a_plan_error(store: GitStore, clone: Clone) -> None:
    clone.add_agent("alice")
    for i in range(5):
        clone.write(f"agents/alice/notes/{i}.md", "n")
    plan = await store.plan(clone.commit_push("files", "files"))
    assert plan.errors == ("agents/alice: agents/alice/ holds more than 5 files",)


async def test_too_many_bytes_under_an_agent_is_a_plan_error(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "state", Limits(agent_bytes=2000))
    clone = Clone(tmp_path / "clone", store.proposed_path)
    clone.add_agent("alice")
    clone.write("agents/alice/data.bin", "d" * 2000)
    plan = await store.plan(clone.commit_push("bytes", "bytes"))
    assert plan.errors == ("agents/alice: agents/alice/ holds more than 2000 bytes",)


async def test_a_tree_deeper_than_the_limit_is_a_plan_error_anywhere(
    store: GitStore, clone: Clone
) -> None:
    clone.add_agent("alice")
    clone.write("agents/alice/" + "d/" * 5 + "f", "x")  # 8 components: the limit
    clone.write("docs/" + "d/" * 6 + "f", "x")
    assert (await store.plan(clone.commit_push("ok", "ok"))).errors == ()
    clone.write("docs/" + "d/" * 7 + "f", "x")
    plan = await store.plan(clone.commit_push("deep", "deep"))
    assert plan.errors == ("docs/d/d/d/d/d/d/d/f is nested deeper than 8",)


async def test_more_agents_than_the_limit_is_a_plan_error_without_parsing_them(
    tmp_path: Path,
) -> None:
    store = GitStore(tmp_path / "state", Limits(agents=3))
    clone = Clone(tmp_path / "clone", store.proposed_path)
    for name in ("alice", "bob", "carol"):
        clone.write(f"agents/{name}/agent.toml", "not toml at all = = =")
    plan = await store.plan(clone.commit_push("many", "many"))
    assert plan.errors == ("the tree declares 4 agents, more than the limit of 3",)


def test_limits_must_be_whole_numbers_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="agents must be a whole number >= 1"):
        Limits(agents=0)


def deep_tree(repo: Path, depth: int) -> str:
    """A tree `d/d/.../d/f` `depth` components deep, built bottom-up by one `git mktree
    --batch` (no checkout could hold it: that is the point)."""
    blob = raw_object(repo, "blob", b"x\n")
    with subprocess.Popen(
        ["git", "mktree", "--batch"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        line = f"100644 blob {blob}\tf\n"
        for _ in range(depth - 1):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            line = f"040000 tree {proc.stdout.readline().strip()}\td\n"
        proc.stdin.write(line + "\n")
        proc.stdin.close()
        return proc.stdout.readline().strip()


async def test_a_tree_three_thousand_deep_is_a_plan_error_not_an_approval(
    store: GitStore,
) -> None:
    repo = store.proposed_path
    deep = deep_tree(repo, 3000)
    main = tree_entries(repo, "main^{tree}")
    root = raw_object(repo, "tree", main + entry("40000", "docs", deep))
    sha = git(repo, "commit-tree", root, "-p", "main", "-m", "deep")
    plan = await store.plan(sha)
    assert len(plan.errors) == 1 and plan.errors[0].endswith("is nested deeper than 8")
    assert plan.errors[0].startswith("docs/d/d/")
