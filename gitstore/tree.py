"""The desired-state tree: `agents/<name>/` directories read into frozen values.

An agent's *rev* is the oid of its subtree, so comparing revs never reads a blob; specs
are parsed only for the agents a caller asks about.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygit2

from gitstore.policy import POLICY_FILE, InvalidPolicyError, Policy, parse_policy
from gitstore.spec import AgentSpec, InvalidNameError, InvalidSpecError, check_name, parse_spec

__all__ = [
    "FILES",
    "AgentTree",
    "agent_dirs",
    "agent_in",
    "agent_tree",
    "agents_at",
    "build_tree",
    "policy_at",
    "policy_data",
    "tree_revs",
]

FILES = ("agent.toml", "agent.nix", "prompt.md")


@dataclass(frozen=True)
class AgentTree:
    """One `agents/<name>/` directory at a rev: its subtree oid is the agent's rev."""

    name: str
    rev: str
    spec: AgentSpec | None
    error: str | None
    files: dict[str, bytes]


def _agents_dir(tree: pygit2.Tree) -> pygit2.Tree | None:
    try:
        agents = tree / "agents"
    except KeyError:
        return None
    return agents if isinstance(agents, pygit2.Tree) else None


def agent_dirs(tree: pygit2.Tree) -> dict[str, pygit2.Tree]:
    """`{name: subtree}` of a desired-state tree, read in one pass over `agents/`."""
    agents = _agents_dir(tree)
    if agents is None:
        return {}
    return {str(e.name): e for e in agents if isinstance(e, pygit2.Tree)}


def tree_revs(tree: pygit2.Tree) -> dict[str, str]:
    """`{name: subtree oid}` of a desired-state tree."""
    agents = _agents_dir(tree)
    if agents is None:
        return {}
    return {str(e.name): str(e.id) for e in agents if isinstance(e, pygit2.Tree)}


def agents_at(tree: pygit2.Tree) -> dict[str, AgentTree]:
    """Every `agents/<name>/` of a tree, parsed; bad names and specs carry an error."""
    agents = _agents_dir(tree)
    if agents is None:
        return {}
    return {str(e.name): agent_tree(e) for e in agents if isinstance(e, pygit2.Tree)}


def agent_in(tree: pygit2.Tree, name: str) -> AgentTree | None:
    """One `agents/<name>/` of a tree, parsed, without reading the others."""
    agents = _agents_dir(tree)
    if agents is None or name not in agents:
        return None
    entry = agents / name
    return agent_tree(entry) if isinstance(entry, pygit2.Tree) else None


def agent_tree(entry: pygit2.Tree, files: dict[str, bytes] | None = None) -> AgentTree:
    """One `agents/<name>/` subtree, parsed (from `files`, its top-level files, when the
    caller has read them already)."""
    name = entry.name or ""
    if files is None:
        files = {
            str(f.name): f.data for f in entry if isinstance(f, pygit2.Blob) and f.name in FILES
        }
    spec: AgentSpec | None = None
    error: str | None = None
    try:
        check_name(name)
        if "agent.toml" not in files:
            raise InvalidSpecError("agent.toml is missing")
        spec = parse_spec(files["agent.toml"])
    except (InvalidNameError, InvalidSpecError) as exc:
        error = str(exc)
    return AgentTree(name=name, rev=str(entry.id), spec=spec, error=error, files=files)


def build_tree(repo: pygit2.Repository, files: dict[str, pygit2.Oid]) -> pygit2.Oid:
    """A tree from a flat `{path: blob oid}` mapping."""
    nested: dict[str, object] = {}
    for path, oid in files.items():
        parts = path.split("/")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[parts[-1]] = oid

    def write(node: dict[str, object]) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for name, value in sorted(node.items()):
            if isinstance(value, dict):
                builder.insert(name, write(value), pygit2.enums.FileMode.TREE)
            else:
                assert isinstance(value, pygit2.Oid)
                builder.insert(name, value, pygit2.enums.FileMode.BLOB)
        return builder.write()

    return write(nested)


def policy_data(tree: pygit2.Tree) -> tuple[str, bytes] | None:
    """`hive.toml` of a tree: its blob oid and bytes (None when the tree has none)."""
    try:
        entry = tree / POLICY_FILE
    except KeyError:
        return None
    if not isinstance(entry, pygit2.Blob):
        return str(entry.id), b"\x00not a file"
    return str(entry.id), entry.data


def policy_at(tree: pygit2.Tree) -> tuple[Policy, str | None]:
    """The policy a tree declares and why it is not valid, if it is not (then the
    defaults stand in for it)."""
    found = policy_data(tree)
    if found is None:
        return Policy(), None
    try:
        return parse_policy(found[1]), None
    except InvalidPolicyError as exc:
        return Policy(), str(exc)
