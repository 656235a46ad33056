"""Process helpers of the process runtime: start times, small JSON records, signalling.

A pid is only trusted together with the kernel's start time of that pid (a recycled pid
has another), and signals go through a pidfd, so they reach exactly the process that was
observed, never one that took its pid since.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path

import anyio

__all__ = [
    "mint_key",
    "read_json",
    "reap",
    "start_time",
    "terminate",
    "wait_exit",
    "write_json",
]


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), None if gone."""
    # One raw read: buffered text I/O costs ~4x on a /proc file (measured), and resync
    # calls this for every running agent.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def read_json(path: str | Path) -> dict[str, object] | None:
    # Raw reads: resync reads two of these per agent on the event loop, where a buffered
    # file object costs about as much as the read itself (bench/bench_resync.py).
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = json.loads(b"".join(chunks))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def mint_key(path: Path) -> str:
    """A fresh random key (a harness's credential), written to `path` 0600 by rename, so
    a reader sees the old key or the new one, never a torn one."""
    key = secrets.token_hex(32)
    # A temporary name of its own (mkstemp: 0600, O_EXCL), so two mints never share one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return key


async def wait_exit(pid: int) -> None:
    """Wait until `pid` exits (at once if it is gone); bound it at the call site."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(fd)
    finally:
        os.close(fd)


async def terminate(pid: int, grace: float, *, group: bool) -> None:
    """SIGTERM `pid` (its whole process group when `group`), SIGKILL after `grace` s.

    A sandboxed harness is PID 1 of its namespace and is signalled alone: its SIGKILL
    takes the namespace with it. An unsandboxed one leads its own process group."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(pid, sig)
                else:
                    signal.pidfd_send_signal(fd, sig)
            with anyio.move_on_after(grace):
                await anyio.wait_readable(fd)
                return
    finally:
        os.close(fd)
        reap(pid)


def reap(pid: int) -> None:
    """Collect an exited child of ours; WNOHANG never blocks (the pidfd said it exited)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
