"""Claude Code's own sandbox around its Bash tool, for agents allowed Bash, where it runs.

Claude Code 2.1.330 has one (`"sandbox": {"enabled": true, ...}` in its settings; on
Linux it needs bubblewrap, socat and namespaces it may create): Bash commands then run
in a bwrap of claude's own, writes confined to the working dir and the network behind
claude's proxy. Found by trying it here: with a dependency missing claude warns and runs
the commands unsandboxed anyway; when bwrap cannot start (as inside an agent's sandbox
when hive-c0re runs as root: a capless root may not map itself into a user namespace),
it refuses the next Bash command. So the harness asks for it only where a trial bwrap
with a network and PID namespace starts and socat is there, and then strictly
(`failIfUnavailable`, no unsandboxed escape hatch); elsewhere Bash runs confined by the
agent's sandbox alone, which the harness logs once.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["SETTINGS", "allows_bash", "availability", "settings_args"]

log = logging.getLogger(__name__)

SETTINGS = {
    "sandbox": {"enabled": True, "failIfUnavailable": True, "allowUnsandboxedCommands": False}
}


def allows_bash(tools: Sequence[str]) -> bool:
    return any(t == "Bash" or t.startswith("Bash(") for t in tools)


@functools.cache
def availability(path: str) -> str | None:
    """None when Claude Code's sandbox can start here (PATH `path`), else why not."""
    bwrap = shutil.which("bwrap", path=path)
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    if shutil.which("socat", path=path) is None:
        return "socat is not installed"
    trial = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    trial += ["--unshare-net", "--unshare-pid", "--", "true"]
    try:
        done = subprocess.run(trial, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"a trial bwrap failed: {exc}"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        return f"a trial bwrap failed: {lines[-1]}"
    return None


def settings_args(tools: Sequence[str], path: str) -> list[str]:
    """claude's `--settings` for an agent allowed `tools` (blocking: it may probe once)."""
    if not allows_bash(tools):
        return []
    why = availability(path)
    if why is not None:
        if why not in _told:
            _told.add(why)
            log.warning("Claude Code's Bash sandbox is off (%s): Bash runs in the agent's", why)
        return []
    return ["--settings", json.dumps(SETTINGS)]


_told: set[str] = set()
