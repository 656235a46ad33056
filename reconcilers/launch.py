"""Starting one harness process: plainly, or as PID 1 of its bubblewrap sandbox.

The harness gets its credential through an inherited pipe whose number is in
`HIVE_KEY_FD`: nothing on disk inside the sandbox holds it and no environment variable
does, and the harness reads it once before anything else runs there. For a sandbox,
bwrap's `--info-fd` gives the harness's pid on the host (`child-pid`), which is the pid
hive-c0re watches and signals; bwrap itself is the child we reap.

The agent page's listening unix socket is bound by hive-c0re (at `page_socket`, in the
agent's dir outside every sandbox) and inherited too, its number in `HIVE_WEB_FD`: the
harness serves on it without the path ever being visible in its sandbox, so nothing an
agent runs can reach any page; only hive-c0re's dashboard connects to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconcilers.runtime import ContainerError
from reconcilers.sandbox import Sandbox, bwrap_argv

__all__ = ["Launched", "launch"]


@dataclass(frozen=True)
class Launched:
    pid: int  # the harness, as the host sees it
    child_pid: int  # our child: bwrap, or the harness itself when unsandboxed


def launch(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    key: str,
    page_socket: Path | None = None,
    sandbox: Sandbox | None = None,
    bwrap: str = "bwrap",
) -> Launched:
    """Start `command` in its own session, its output appended to `log_path`."""
    key_read, key_write = os.pipe()
    os.write(key_write, key.encode())
    os.close(key_write)
    fds = [key_read]
    extra = {"HIVE_KEY_FD": str(key_read)}
    if page_socket is not None:
        page = bind_page_socket(page_socket)
        fds.append(page)
        extra["HIVE_WEB_FD"] = str(page)
    argv = list(command)
    info_read = -1
    if sandbox is not None:
        info_read, info_write = os.pipe()
        fds.append(info_write)
        argv = bwrap_argv(sandbox, command, bwrap=bwrap, info_fd=info_write)
    try:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, **extra},
                cwd=cwd,
                start_new_session=True,
                pass_fds=fds,
            )
    except OSError as exc:
        if info_read >= 0:
            os.close(info_read)
        raise ContainerError(f"cannot start {argv[0]}: {exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)
    # The Popen object is dropped; the exit watcher reaps the child through waitpid.
    proc.returncode = 0
    if sandbox is None:
        return Launched(proc.pid, proc.pid)
    return Launched(_child_pid(proc.pid, info_read, log_path), proc.pid)


def bind_page_socket(path: Path) -> int:
    """A listening unix socket at `path` (0600, a stale one replaced), as a bare fd."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ContainerError(f"cannot bind the agent page socket {path}: {exc}") from exc
    return sock.detach()


def _child_pid(bwrap_pid: int, info_fd: int, log_path: Path) -> int:
    # bwrap writes the JSON and closes its end as soon as the sandbox's first process
    # exists, well before the harness runs; EOF without it means bwrap gave up.
    with os.fdopen(info_fd, "rb") as info:
        data = info.read()
    try:
        pid = json.loads(data)["child-pid"]
    except (ValueError, KeyError, TypeError):
        pid = None
    if isinstance(pid, int):
        return pid
    with contextlib.suppress(ChildProcessError):
        os.waitpid(bwrap_pid, 0)
    tail = log_path.read_bytes()[-2000:].decode(errors="replace").strip().splitlines()
    raise ContainerError(f"bwrap could not set up the sandbox: {(tail or ['no output'])[-1]}")
