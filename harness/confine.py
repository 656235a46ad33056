"""Claude in a bubblewrap sandbox of its own, inside the agent's container.

Where the harness's key is a file the agent's processes could read (the nixos runtime
bind-mounts it at `/run/hive-key`), the harness runs each claude turn under bwrap
(`HIVE_CLAUDE_SANDBOX=bwrap`): the same filesystem, but the key's dir an empty tmpfs; a
PID namespace of its own with claude as PID 1, so the harness is not in its `/proc`; no
capabilities, so nothing inside can undo a mount or trace the harness; and
`--die-with-parent`, so the turn dies with the harness. The process runtime does not
need it: there the whole agent is sandboxed, the key never is a file, and the harness
is non-dumpable among processes without capabilities (`harness.credential`); a capless
root could not start a nested bwrap anyway (mapping root into a user namespace needs
CAP_SETFCAP since Linux 5.12).

bwrap's `--info-fd` gives claude's pid on our side: signals go to claude's process group
(it leads a session of its own), never to bwrap, whose default action on SIGINT would
end the sandbox before claude could finish the turn.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process

__all__ = ["Confinement", "confinement_from_env", "open_claude"]


@dataclass(frozen=True)
class Confinement:
    bwrap: str
    hidden: tuple[str, ...] = ()

    def wrap(self, command: Sequence[str], *, cwd: str, info_fd: int) -> list[str]:
        argv = [
            self.bwrap,
            "--dev-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--unshare-pid",
            "--unshare-ipc",
            "--as-pid-1",
            "--new-session",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]
        for path in self.hidden:
            argv += ["--tmpfs", path]
        return [*argv, "--chdir", cwd, "--info-fd", str(info_fd), "--", *command]


def confinement_from_env(env: Mapping[str, str]) -> Confinement | None:
    """`HIVE_CLAUDE_SANDBOX=bwrap`: confine claude, hiding `HIVE_KEY_FILE`'s dir."""
    if env.get("HIVE_CLAUDE_SANDBOX", "") != "bwrap":
        return None
    bwrap = shutil.which("bwrap", path=env.get("PATH", os.defpath)) or "bwrap"
    key_file = env.get("HIVE_KEY_FILE", "")
    return Confinement(bwrap, (os.path.dirname(key_file),) if key_file else ())


async def open_claude(
    cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], confine: Confinement | None
) -> tuple[Process, int]:
    """Start claude in a session of its own, confined or not; returns the process and the
    process group its signals go to (claude's, never bwrap's)."""
    if confine is None:
        process = await anyio.open_process(cmd, cwd=cwd, env=env, start_new_session=True)
        return process, process.pid
    info_read, info_write = os.pipe()
    try:
        process = await anyio.open_process(
            confine.wrap(cmd, cwd=str(cwd.absolute()), info_fd=info_write),
            cwd=cwd,
            env=env,
            start_new_session=True,
            pass_fds=[info_write],
        )
    except BaseException:
        os.close(info_read)
        raise
    finally:
        os.close(info_write)
    child = await anyio.to_thread.run_sync(_read_child_pid, info_read)
    return process, child if child is not None else process.pid


def _read_child_pid(fd: int) -> int | None:
    """bwrap's `child-pid` from its info fd (closed here); None if bwrap gave up first."""
    with os.fdopen(fd, "rb") as info:
        data = info.read()
    try:
        pid = json.loads(data)["child-pid"]
    except (ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) else None
