"""Seeing refs move: inotify through watchfiles, with a periodic resync as safety net.

A `git push` writes objects first and moves the ref last, so only changes below `refs/heads/`
and to `packed-refs` matter. Small step and debounce (measured: the event arrives before
`git push` returns) keep a push on the dashboard within milliseconds; the resync tick
covers anything inotify misses (queue overflow, a filesystem without inotify).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from watchfiles import awatch

__all__ = ["serve_ref_watcher"]


def _is_ref(root: Path, path: str) -> bool:
    rel = Path(path).relative_to(root).as_posix() if path.startswith(str(root)) else path
    if rel.endswith(".lock"):
        return False
    # Branches are what become approvals; refs/hive/* are hive-c0re's own bookkeeping.
    return rel == "packed-refs" or rel.startswith("refs/heads/")


async def serve_ref_watcher(
    repo: Path,
    notify: Callable[[str], None],
    *,
    resync: float,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call `notify("change")` whenever refs of `repo` may have moved, and
    `notify("resync")` at start and every `resync` seconds. `notify` must not block:
    consumers read everything afresh, so it only has to wake them."""
    root = repo  # callers pass absolute paths (settings resolve them)

    async def on_changes() -> None:
        async for _ in awatch(
            root,
            watch_filter=lambda _change, path: _is_ref(root, path),
            step=1,
            debounce=5,
            recursive=True,
            # The watcher thread checks for cancellation this often (ms); the default
            # (5 s) would make every shutdown wait that long.
            rust_timeout=100,
        ):
            notify("change")

    async with anyio.create_task_group() as tg:
        tg.start_soon(on_changes)
        # Let the watcher task register its inotify watches before we report ready.
        await anyio.lowlevel.checkpoint()
        task_status.started()
        while True:
            notify("resync")
            await anyio.sleep(resync)
