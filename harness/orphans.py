"""Reaping what claude leaves behind when the harness is PID 1 of its sandbox.

In a bwrap sandbox the harness is the namespace's init, so every process orphaned there
(claude's MCP server or a tool's background job, when claude exits before them) becomes
the harness's child, and would stay a zombie until the harness exits.
"""

from __future__ import annotations

import os

__all__ = ["reap_orphans"]


def reap_orphans() -> int:
    """Collect exited children we did not start ourselves; returns how many.

    Call it only while no claude of ours runs (asyncio waits for that one itself): then
    every child that has exited is such an orphan."""
    if os.getpid() != 1:
        return 0
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1
