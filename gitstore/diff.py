"""The diff of an approval: what its branch changes, as files, hunks and lines.

The diff is taken from the merge base of the approval's `base` (applied `main` when it
was proposed) and its `sha` to the `sha`, like a pull request's: a branch cut from an old
`main` does not show as reverting what landed since. Both ends are immutable commits, so
a rendered diff is cached by `(base, sha)` and the dashboard never recomputes it.

Blocking pygit2; `GitStore.approval_diffs` runs it in a worker thread under its lock and
`ui.diff.DiffCache` keeps what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygit2

__all__ = ["MAX_LINES", "ApprovalDiff", "FileDiff", "Hunk", "Line", "approval_diff", "unified"]

MAX_LINES = 2000


@dataclass(frozen=True)
class Line:
    kind: str  # "add", "del", "ctx"
    old: int | None
    new: int | None
    text: str


@dataclass(frozen=True)
class Hunk:
    header: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # added, deleted, modified, renamed
    additions: int
    deletions: int
    binary: bool
    hunks: tuple[Hunk, ...]


@dataclass(frozen=True)
class ApprovalDiff:
    message: str
    files: tuple[FileDiff, ...] = ()
    truncated: bool = False
    error: str | None = None
    additions: int = field(default=0)
    deletions: int = field(default=0)


_STATUS = {
    pygit2.enums.DeltaStatus.ADDED: "added",
    pygit2.enums.DeltaStatus.DELETED: "deleted",
    pygit2.enums.DeltaStatus.RENAMED: "renamed",
}
_KINDS = {"+": "add", "-": "del", " ": "ctx"}


def approval_diff(
    repo: pygit2.Repository, base: str, sha: str, max_lines: int = MAX_LINES
) -> ApprovalDiff:
    """What `sha` changes relative to its merge base with `base`, at most `max_lines`."""
    try:
        commit = repo.get(sha)
        if not isinstance(commit, pygit2.Commit):
            return ApprovalDiff(message="", error=f"{sha[:12]} is not in the proposed repo")
        start_oid = repo.merge_base(pygit2.Oid(hex=base), commit.id) if base else None
        start = repo.get(start_oid) if start_oid is not None else None
        old_tree = start.tree if isinstance(start, pygit2.Commit) else None
        if old_tree is None:
            diff = commit.tree.diff_to_tree(swap=True)
        else:
            diff = repo.diff(old_tree, commit.tree, context_lines=3)
        diff.find_similar()
    except (KeyError, ValueError, pygit2.GitError) as exc:
        return ApprovalDiff(message="", error=f"cannot diff {sha[:12]}: {exc}")
    files: list[FileDiff] = []
    budget = max_lines
    truncated = False
    for patch in diff:
        if patch is None:
            continue
        delta = patch.delta
        hunks: list[Hunk] = []
        for hunk in patch.hunks:
            if budget <= 0:
                truncated = True
                break
            lines = []
            for line in hunk.lines:
                kind = _KINDS.get(line.origin)
                if kind is None:
                    continue  # "no newline at end of file" markers and the like
                lines.append(
                    Line(
                        kind,
                        line.old_lineno if line.old_lineno >= 0 else None,
                        line.new_lineno if line.new_lineno >= 0 else None,
                        line.content.rstrip("\n"),
                    )
                )
            budget -= len(lines)
            hunks.append(Hunk(hunk.header.strip(), tuple(lines)))
        _, additions, deletions = patch.line_stats
        files.append(
            FileDiff(
                path=delta.new_file.path or delta.old_file.path,
                status=_STATUS.get(delta.status, "modified"),
                additions=additions,
                deletions=deletions,
                binary=bool(delta.is_binary),
                hunks=tuple(hunks),
            )
        )
    return ApprovalDiff(
        message=commit.message.strip(),
        files=tuple(files),
        truncated=truncated,
        additions=sum(f.additions for f in files),
        deletions=sum(f.deletions for f in files),
    )


_PREFIX = {"add": "+", "del": "-", "ctx": " "}


def unified(diff: ApprovalDiff) -> str:
    """The diff as `git diff` prints it (what `hive diff N` shows)."""
    if diff.error:
        return f"# {diff.error}\n"
    out: list[str] = []
    for f in diff.files:
        old = "/dev/null" if f.status == "added" else f"a/{f.path}"
        new = "/dev/null" if f.status == "deleted" else f"b/{f.path}"
        out.append(f"diff --git a/{f.path} b/{f.path}")
        if f.binary:
            out.append(f"Binary files {old} and {new} differ")
            continue
        out += [f"--- {old}", f"+++ {new}"]
        for hunk in f.hunks:
            out.append(hunk.header)
            out += [_PREFIX[line.kind] + line.text for line in hunk.lines]
    if diff.truncated:
        out.append(f"# ... cut at {MAX_LINES} lines")
    return "\n".join(out) + "\n" if out else ""
