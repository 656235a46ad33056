"""The bubblewrap sandbox of an agent on the process runtime: what of the host it sees.

A `Sandbox` is a list of mounts: `for_agent` builds it from the agent's layout and the
host paths its harness needs (`host_mounts`: the system, the Python environment and
packages the harness runs from, the claude CLI and git), and `bwrap_argv` turns it into
bwrap's command line. Only `host_mounts` reads the filesystem; the rest is pure.

Inside: the system and the harness's code read-only; the agent's notes, credentials,
HOME and a private /tmp writable; its own socket dir (read-only: connecting needs no
write access, and no file can be planted beside the socket); for the manager also its
clone and `proposed.git`, whose `config` and `hooks/` stay read-only, so nothing the
manager writes there runs as the operator on a later local push. `<state>` and
`<runtime>` are empty tmpfs even where a read-only path contains them; mounts are
applied parents first, so the agent's own dirs show again inside them.

Namespaces: mount, PID, IPC, UTS and cgroup are new; the network is shared (agents call
the Anthropic API; tests call a fake on loopback). Every capability is dropped (bwrap
run by root keeps them otherwise, and CAP_SYS_ADMIN could undo any mount). The harness
is PID 1 of its namespace (`--as-pid-1`): when it dies, for whatever reason, the kernel
kills everything else in the namespace, claude and its tools included. Not
`--die-with-parent`: that is PR_SET_PDEATHSIG against the *thread* of hive-c0re that
started bwrap, and agents must outlive hive-c0re (and anyio's worker threads).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gitstore.spec import MANAGER
from reconcilers.layout import Layout

__all__ = [
    "INSTALL_HINT",
    "Mount",
    "Sandbox",
    "bwrap_argv",
    "find_bwrap",
    "for_agent",
    "host_mounts",
]

INSTALL_HINT = (
    "bubblewrap (bwrap) is not installed, and hive-c0re runs every agent in a bwrap "
    "sandbox: install it (`apt-get install bubblewrap`), or start hive-c0re with "
    "--unsandboxed (HIVE_UNSANDBOXED=1) to run agents with all of the operator's rights"
)

MountKind = Literal["ro", "rw", "tmpfs", "symlink"]
# Applied in this order at equal depth: a tmpfs hides what a bind of the same depth
# brought, and an agent's own writable dir comes after the tmpfs that hides its parent.
_RANK: dict[MountKind, int] = {"symlink": 0, "ro": 0, "tmpfs": 1, "rw": 2}

SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix/store")
# Our packages: an editable install imports them from the checkout, outside any prefix.
PACKAGES = ("controller", "gitstore", "harness", "hyperhive", "reconcilers", "ui")


@dataclass(frozen=True)
class Mount:
    """One bwrap mount: a bind of `source` at `dest`, a tmpfs, or a symlink to `source`.

    `optional` binds (host paths found by looking around) are skipped when missing; the
    agent's own dirs must exist."""

    kind: MountKind
    dest: str
    source: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Sandbox:
    mounts: tuple[Mount, ...]
    chdir: str


def _within(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def for_agent(layout: Layout, name: str, *, host: Sequence[Mount], proposed_repo: Path) -> Sandbox:
    """The sandbox of agent `name`: `host` read-only, its own dirs, nothing else of ours."""
    hidden = [str(layout.state_dir), str(layout.runtime_dir)]
    mounts: list[Mount] = [m for m in host if not _within(m.dest, hidden)]
    mounts.append(Mount("tmpfs", "/tmp"))
    mounts += [Mount("tmpfs", d) for d in hidden]
    for own in (layout.claude_dir(name), layout.notes_dir(name), layout.home_dir(name)):
        mounts.append(Mount("rw", str(own), str(own)))
    sockets = str(layout.socket_dir(name))
    mounts.append(Mount("ro", sockets, sockets))
    if name == MANAGER:
        clone, repo = str(layout.agents_clone()), str(proposed_repo)
        mounts.append(Mount("rw", clone, clone))
        # At its real path, so the clone's `origin` works as it is.
        mounts.append(Mount("rw", repo, repo))
        for fixed in ("config", "hooks"):
            mounts.append(Mount("ro", f"{repo}/{fixed}", f"{repo}/{fixed}", optional=True))
    return Sandbox(tuple(dict.fromkeys(mounts)), chdir=str(layout.notes_dir(name)))


def bwrap_argv(
    sandbox: Sandbox, command: Sequence[str], *, bwrap: str = "bwrap", info_fd: int | None = None
) -> list[str]:
    """bwrap's command line running `command` in `sandbox` (`info_fd` gets its pids)."""
    argv = [
        bwrap,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--as-pid-1",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    ordered = sorted(sandbox.mounts, key=lambda m: (len(Path(m.dest).parts), _RANK[m.kind]))
    for m in ordered:
        if m.kind == "tmpfs":
            argv += ["--tmpfs", m.dest]
        elif m.kind == "symlink":
            argv += ["--symlink", m.source, m.dest]
        else:
            flag = "--ro-bind" if m.kind == "ro" else "--bind"
            argv += [flag + ("-try" if m.optional else ""), m.source, m.dest]
    argv += ["--chdir", sandbox.chdir]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return [*argv, "--", *command]


def find_bwrap(env: Mapping[str, str]) -> str | None:
    """bwrap on hive-c0re's PATH, or None."""
    return shutil.which("bwrap", path=env.get("PATH", os.defpath))


def host_mounts(command: Sequence[str], env: Mapping[str, str]) -> list[Mount]:
    """The host paths a harness started with `command` needs, read-only.

    The system dirs (merged-/usr links stay links); the prefixes and site dirs of this
    Python (the default harness runs in hive-c0re's own environment) and the dirs our
    packages are imported from; PYTHONPATH; absolute paths in `command`; the claude CLI
    (`HIVE_CLAUDE_BIN`, else `claude` on PATH) and git, with the dirs their links lead
    to; and the target of /etc/resolv.conf when it points outside /etc. Nothing else of
    the operator's HOME or PATH.
    """
    mounts: list[Mount] = []
    for path in SYSTEM:
        if os.path.islink(path):
            mounts.append(Mount("symlink", path, os.readlink(path)))
        elif os.path.isdir(path):
            mounts.append(Mount("ro", path, path))
    wanted: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    wanted += _site_dirs()
    wanted += _package_dirs()
    wanted += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    wanted += [arg for arg in command if os.path.isabs(arg)]
    for tool in (env.get("HIVE_CLAUDE_BIN") or "claude", "git"):
        found = shutil.which(tool, path=env.get("PATH", os.defpath))
        if found is not None:
            wanted += _executable_dirs(found)
    resolv = os.path.realpath("/etc/resolv.conf")
    if not resolv.startswith("/etc/"):
        wanted.append(resolv)
    covered = [m.dest for m in mounts]
    for path in sorted({os.path.abspath(p) for p in wanted if os.path.isabs(p)}, key=len):
        for candidate in dict.fromkeys((path, os.path.realpath(path))):
            if candidate == "/" or _within(candidate, covered) or not os.path.exists(candidate):
                continue
            mounts.append(Mount("ro", candidate, candidate, optional=True))
            covered.append(candidate)
    return mounts


def _site_dirs() -> list[str]:
    import site

    dirs = list(site.getsitepackages())
    user = site.getusersitepackages()
    if user in sys.path:
        dirs.append(user)
    return dirs


def _package_dirs() -> list[str]:
    dirs = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs += list(spec.submodule_search_locations)
    return dirs


def _executable_dirs(found: str) -> list[str]:
    """The dir a tool was found in and the install its links lead to (`.../pkg/bin/x`
    -> `.../pkg`, so files beside the binary are there too)."""
    real = Path(os.path.realpath(found))
    dirs = [os.path.dirname(os.path.abspath(found)), str(real.parent)]
    if real.parent.name == "bin":
        dirs.append(str(real.parent.parent))
    return dirs
