"""The two bare repositories: `proposed.git` (anyone pushes) and `applied.git` (hive only).

Both start from one shared root commit that declares the manager, so every proposed
branch has a merge base with applied `main`. Objects move between the repositories by
copying them through the object databases (`copy_objects`): no shared alternates, so a
`git gc` in one can never corrupt the other. Applied `main` is mirrored into proposed as
`refs/hive/applied` (not a branch: it never becomes an approval) so plans are computed in
the proposed repo and people can rebase onto what runs.

Every call here is blocking; callers run them in a worker thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pygit2

from gitstore.hooks import install_gate_hook
from gitstore.spec import (
    MANAGER,
    AgentSpec,
    InvalidNameError,
    InvalidSpecError,
    check_name,
    parse_spec,
)

__all__ = [
    "APPLIED_MIRROR",
    "MAIN",
    "AgentTree",
    "GitStore",
    "GitStoreError",
    "UnknownRevError",
    "agent_in",
    "copy_objects",
    "ref_target",
    "tree_revs",
]

MAIN = "refs/heads/main"
APPLIED_MIRROR = "refs/hive/applied"
_SIGNATURE = ("hive-c0re", "hive-c0re@localhost")
_MANAGER_TOML = b'description = "the manager: coordinates the swarm"\n'


class GitStoreError(Exception):
    """Raised when a repository operation fails in a way the caller should report."""


class UnknownRevError(GitStoreError):
    """Raised when a sha or ref does not name a commit in the repository."""


@dataclass(frozen=True)
class AgentTree:
    """One `agents/<name>/` directory at a rev: its subtree oid is the agent's rev."""

    name: str
    rev: str
    spec: AgentSpec | None
    error: str | None
    files: dict[str, bytes]


def ref_target(repo: pygit2.Repository, name: str) -> pygit2.Oid:
    target = repo.references[name].resolve().target
    assert isinstance(target, pygit2.Oid), name
    return target


def _signature() -> pygit2.Signature:
    return pygit2.Signature(*_SIGNATURE)


class GitStore:
    """Opens (or creates) the repos and reads the desired-state tree at any rev."""

    def __init__(self, state_dir: Path) -> None:
        self.proposed_path = state_dir / "proposed.git"
        self.applied_path = state_dir / "applied.git"
        self.lock = threading.Lock()
        self._init()
        install_gate_hook(self.applied_path, self.proposed_path)
        self.proposed = pygit2.Repository(str(self.proposed_path))
        self.applied = pygit2.Repository(str(self.applied_path))

    def _init(self) -> None:
        self.proposed_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.proposed_path.exists():
            repo = pygit2.init_repository(str(self.proposed_path), bare=True)
            repo.set_head(MAIN)
            blob = repo.create_blob(_MANAGER_TOML)
            root = _build_tree(repo, {f"agents/{MANAGER}/agent.toml": blob})
            repo.create_commit(
                MAIN, _signature(), _signature(), "hive: declare the manager", root, []
            )
        if not self.applied_path.exists():
            applied = pygit2.init_repository(str(self.applied_path), bare=True)
            applied.set_head(MAIN)
            proposed = pygit2.Repository(str(self.proposed_path))
            head = ref_target(proposed, MAIN)
            copy_objects(proposed, applied, head)
            applied.create_reference_direct(MAIN, head, False, "hive: initial")
            proposed.create_reference_direct(APPLIED_MIRROR, head, True)

    # --- refs --------------------------------------------------------------------

    def applied_head(self) -> str:
        return str(self.applied.references[MAIN].target)

    def proposed_heads(self) -> dict[str, str]:
        """Every branch of the proposed repo and the commit it points to."""
        heads: dict[str, str] = {}
        for ref in self.proposed.references.iterator():
            if ref.name.startswith("refs/heads/"):
                target = ref.resolve().target
                if isinstance(target, pygit2.Oid):
                    heads[ref.name] = str(target)
        return heads

    def commit(self, repo: pygit2.Repository, sha: str) -> pygit2.Commit:
        try:
            obj = repo.get(sha)
        except (ValueError, TypeError) as exc:
            raise UnknownRevError(f"{sha!r} is not a commit id") from exc
        if not isinstance(obj, pygit2.Commit):
            raise UnknownRevError(f"{sha} is not a commit in {repo.path}")
        return obj

    def is_applied(self, sha: str) -> bool:
        """Whether `sha` is applied `main` or one of its ancestors."""
        head = ref_target(self.applied, MAIN)
        oid = pygit2.Oid(hex=sha)
        if oid == head:
            return True
        if oid not in self.applied.odb:
            return False
        return bool(self.applied.descendant_of(head, oid))

    def mirror_applied(self) -> None:
        """Copy applied `main` into proposed as `refs/hive/applied`."""
        head = ref_target(self.applied, MAIN)
        mirror = self.proposed.references.get(APPLIED_MIRROR)
        if mirror is not None and mirror.target == head:
            return  # unchanged: writing the ref again would only wake the ref watcher
        copy_objects(self.applied, self.proposed, head)
        self.proposed.create_reference_direct(APPLIED_MIRROR, head, True)

    # --- the desired-state tree ----------------------------------------------------

    def agents_at(self, repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, AgentTree]:
        """Every `agents/<name>/` of a tree, parsed; bad names and specs carry an error."""
        out: dict[str, AgentTree] = {}
        try:
            agents = tree / "agents"
        except KeyError:
            return out
        if not isinstance(agents, pygit2.Tree):
            return out
        for entry in agents:
            if isinstance(entry, pygit2.Tree):
                out[entry.name or ""] = _agent_tree(entry)
        return out

    def applied_agents(self, sha: str | None = None) -> dict[str, AgentTree]:
        commit = self.commit(self.applied, sha or self.applied_head())
        return self.agents_at(self.applied, commit.tree)

    def applied_agent(self, name: str, sha: str | None = None) -> AgentTree | None:
        """One agent at applied `main` (or `sha`), without reading the others."""
        return agent_in(self.commit(self.applied, sha or self.applied_head()).tree, name)

    def agent_revs(self, repo: pygit2.Repository, sha: str) -> dict[str, str]:
        """`{name: subtree oid}` at a commit: cheap, no blob is read."""
        return tree_revs(self.commit(repo, sha).tree)


def _agents_dir(tree: pygit2.Tree) -> pygit2.Tree | None:
    try:
        agents = tree / "agents"
    except KeyError:
        return None
    return agents if isinstance(agents, pygit2.Tree) else None


def tree_revs(tree: pygit2.Tree) -> dict[str, str]:
    """`{name: subtree oid}` of a desired-state tree."""
    agents = _agents_dir(tree)
    if agents is None:
        return {}
    return {str(e.name): str(e.id) for e in agents if isinstance(e, pygit2.Tree)}


def agent_in(tree: pygit2.Tree, name: str) -> AgentTree | None:
    """One `agents/<name>/` of a tree, parsed."""
    agents = _agents_dir(tree)
    if agents is None or name not in agents:
        return None
    entry = agents / name
    return _agent_tree(entry) if isinstance(entry, pygit2.Tree) else None


def _agent_tree(entry: pygit2.Tree) -> AgentTree:
    name = entry.name or ""
    files = {
        str(f.name): f.data
        for f in entry
        if isinstance(f, pygit2.Blob) and f.name in ("agent.toml", "agent.nix", "prompt.md")
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


def _build_tree(repo: pygit2.Repository, files: dict[str, pygit2.Oid]) -> pygit2.Oid:
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


def copy_objects(src: pygit2.Repository, dst: pygit2.Repository, tip: pygit2.Oid) -> int:
    """Copy the commit `tip` and everything it reaches that `dst` lacks; returns the count.

    Descent stops at any object `dst` already has (a commit there has its history there
    too). Objects are written children first (post-order), so a copy cut short by a crash
    never leaves an object in `dst` whose references are missing.
    """
    copied = 0
    done: set[pygit2.Oid] = set()
    stack: list[tuple[pygit2.Oid, bool]] = [(tip, False)]
    while stack:
        oid, expanded = stack.pop()
        if oid in done:
            continue
        if expanded:
            kind, data = src.odb.read(oid)
            dst.odb.write(kind, data)
            done.add(oid)
            copied += 1
            continue
        if oid in dst.odb:
            done.add(oid)
            continue
        obj = src.get(oid)
        if obj is None:
            raise GitStoreError(f"object {oid} is missing from {src.path}")
        stack.append((oid, True))
        if isinstance(obj, pygit2.Commit):
            stack.extend((p, False) for p in obj.parent_ids)
            stack.append((obj.tree_id, False))
        elif isinstance(obj, pygit2.Tree):
            stack.extend((entry.id, False) for entry in obj)
        elif isinstance(obj, pygit2.Tag):
            stack.append((obj.target, False))
    return copied
