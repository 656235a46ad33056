"""The shape of a proposed tree against its `Limits`: odd entry names, sizes, depth.

Agent dirs are walked without recursion, sizes come from object headers where nothing
else reads the blob, and a walk stops at the first limit it crosses.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import pygit2

from gitstore.limits import Limits

__all__ = ["agent_dir_problems", "deep_paths", "entry_name_problem"]


def entry_name_problem(name: str) -> str | None:
    """Why a tree entry's name cannot be checked out (git itself never writes these)."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        return f"tree entry {name!r} is not a file name"
    if name.lower() == ".git":
        return "a tree entry may not be named .git"
    return None


def _size(repo: pygit2.Repository, oid: pygit2.Oid) -> int:
    # A loose object is read whole even for its header (a packed one is not); the files
    # a plan parses are then read from libgit2's object cache.
    return int(repo.odb.read_header(oid)[1])


def _entries(tree: pygit2.Tree) -> Iterator[tuple[str, pygit2.Oid, int]]:
    # Entries of a tree without loading the objects they name.
    for entry in tree:
        yield str(entry.name), entry.id, int(entry.filemode)


def agent_dir_problems(
    repo: pygit2.Repository,
    name: str,
    tree: pygit2.Tree,
    limits: Limits,
    read: Collection[str] = (),
) -> tuple[list[str], dict[str, bytes]]:
    """What is wrong with the shape of `agents/<name>/`: odd entry names, too many files or
    bytes, paths too deep, `agent.toml` or `prompt.md` too large; and the contents of the
    top-level files named in `read` that are within their limits (read once, here)."""
    problems: list[str] = []
    contents: dict[str, bytes] = {}
    files = 0
    total = 0
    stack: list[tuple[str, pygit2.Tree, int]] = [("", tree, 2)]
    while stack:
        prefix, node, depth = stack.pop()
        for entry, oid, mode in _entries(node):
            problem = entry_name_problem(entry)
            if problem:
                return [f"{problem} (in agents/{name}/{prefix})"], {}
            path = prefix + entry
            if mode == pygit2.enums.FileMode.TREE:
                if depth + 1 >= limits.tree_depth:
                    return [f"agents/{name}/{path}/ is nested deeper than {limits.tree_depth}"], {}
                child = repo.get(oid)
                if isinstance(child, pygit2.Tree):
                    stack.append((path + "/", child, depth + 1))
                continue
            if mode == pygit2.enums.FileMode.COMMIT:
                return [f"agents/{name}/{path} is a submodule: agent dirs hold files only"], {}
            files += 1
            blob = repo.get(oid) if path in read else None
            size = blob.size if isinstance(blob, pygit2.Blob) else _size(repo, oid)
            total += size
            if isinstance(blob, pygit2.Blob) and size <= limits.agent_bytes:
                contents[path] = blob.data
            if path == "agent.toml" and size > limits.agent_toml_bytes:
                problems.append(
                    f"agent.toml is {size} bytes, more than the limit of {limits.agent_toml_bytes}"
                )
            if path == "prompt.md" and size > limits.prompt_bytes:
                problems.append(
                    f"prompt.md is {size} bytes, more than the limit of {limits.prompt_bytes}"
                )
            if files > limits.agent_files:
                return [f"agents/{name}/ holds more than {limits.agent_files} files"], {}
            if total > limits.agent_bytes:
                return [f"agents/{name}/ holds more than {limits.agent_bytes} bytes"], {}
    return problems, contents


def deep_paths(old: pygit2.Tree, new: pygit2.Tree, limits: Limits) -> list[str]:
    """Paths that `new` adds or changes since `old` nested deeper than the limit (git
    cannot check out a path longer than the system allows; a deep tree is that path)."""
    for delta in old.diff_to_tree(new).deltas:
        path = delta.new_file.path
        if path.count("/") + 1 > limits.tree_depth:
            shown = path if len(path) <= 80 else path[:80] + "..."
            return [f"{shown} is nested deeper than {limits.tree_depth}"]
    return []
