"""Agents for the broker and harness benchmarks, declared the operator's way.

A commit that writes `agents/<name>/agent.toml` is pushed to `proposed.git` from a clone
with the git CLI, and the approval it raises is approved with the `hive` CLI of this
checkout; then the agents' sockets are there. Works the same against the daemon
subprocess and a hive in-process (everything here runs off the event loop).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from _utils import REPO, agent_toml, git_async

__all__ = ["agent_socket", "cpu_seconds", "declare", "hive_cli"]

_TICK = os.sysconf("SC_CLK_TCK")


def agent_socket(runtime_dir: Path, name: str) -> Path:
    """`<runtime>/agents/<name>/mcp.sock`, or `<runtime>/manager/mcp.sock` for hm1nd."""
    if name == "hm1nd":
        return runtime_dir / "manager" / "mcp.sock"
    return runtime_dir / "agents" / name / "mcp.sock"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def hive_cli(host_socket: Path, *args: str) -> Any:
    """`hive --json ARGS` (this checkout's) against `host_socket`; its parsed result."""
    done = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "controller.cli_admin",
            "--socket",
            str(host_socket),
            "--json",
            *args,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(done.stdout)


async def declare(
    state_dir: Path,
    runtime_dir: Path,
    agents: Mapping[str, bool],
    workdir: Path,
    timeout: float = 60,
) -> None:
    """Push `agents/<name>/agent.toml` (`enabled` or not), `hive approve` it, and wait
    for every agent's socket."""
    host_socket = runtime_dir / "host.sock"
    clone = workdir / "clone"
    if not clone.exists():
        await git_async(workdir, "clone", "-q", str(state_dir / "proposed.git"), str(clone))
    # The broker benchmarks send thousands a second per agent: far past the default
    # `rate.send_per_minute` (60), so they raise it to the most hive.toml allows. Every
    # send is still checked against it, as in production.
    (clone / "hive.toml").write_text("[rate]\nsend_per_minute = 100000\n")
    for name, enabled in agents.items():
        spec = clone / "agents" / name / "agent.toml"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(agent_toml(f"bench {name}", enabled=enabled))
    await git_async(clone, "add", "-A")
    await git_async(clone, "commit", "-qm", "bench agents")
    sha = await git_async(clone, "rev-parse", "HEAD")
    await git_async(clone, "push", "-q", "origin", "HEAD:main")
    with anyio.fail_after(timeout):
        while True:
            pending = await hive_cli(host_socket, "approvals")
            ids = [a["id"] for a in pending if a["sha"] == sha]
            if ids:
                break
            await anyio.sleep(0.05)
        await hive_cli(host_socket, "approve", str(ids[0]))
        while not all(agent_socket(runtime_dir, n).is_socket() for n in agents):
            await anyio.sleep(0.02)
