"""The harness's credential, read once at start-up and kept out of reach of what it runs.

hive-c0re mints a key for every harness it starts; with it (`auth` on the agent socket)
the harness's own connections may use the harness-only commands (the turn loop's lease,
turn state, the operator's prompt from the agent page), which claude's MCP server and the
model's tools may not. The process runtime hands the key over through an inherited pipe
(`HIVE_KEY_FD`); the nixos runtime bind-mounts it read-only (`HIVE_KEY_FILE`).

Before reading it the harness makes itself non-dumpable (`PR_SET_DUMPABLE` 0): the kernel
then refuses `/proc/<pid>/mem`, `environ`, `fd/*` and ptrace of the harness to every
process without CAP_SYS_PTRACE, same uid or not, and in a bwrap sandbox no process has
any capability. The key never enters an environment variable claude inherits, a file in
the sandbox, the history or a log.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

__all__ = ["take_key"]

_PR_SET_DUMPABLE = 4
_MAX_KEY = 512


def _set_non_dumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def take_key(env: MutableMapping[str, str]) -> str | None:
    """The key hive-c0re handed over (removing its traces from `env`), or None."""
    fd_text = env.pop("HIVE_KEY_FD", "")
    path = env.pop("HIVE_KEY_FILE", "")
    if not fd_text and not path:
        return None
    _set_non_dumpable()
    if fd_text:
        fd = int(fd_text)
        try:
            data = os.read(fd, _MAX_KEY)
        finally:
            os.close(fd)
    else:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_KEY)
    key = data.decode().strip()
    return key or None
