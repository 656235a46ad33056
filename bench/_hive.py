"""A real hive for benchmarks: `hive-c0re serve` in a subprocess, or in-process.

The daemon runs from this checkout (`python -m controller.cli_daemon`, `PYTHONPATH` set),
so a benchmark measures the code beside it, not whatever is installed. State and sockets
live in a short temp dir (AF_UNIX paths are limited to 108 bytes). Agents are declared
the way an operator does it: a commit pushed to `proposed.git` with the git CLI, then
`hive approve`. Harness processes outlive the daemon (as containers do), so closing stops
them by the pids the process runtime recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

__all__ = [
    "REPO",
    "HiveDirs",
    "open_checkout",
    "open_daemon",
    "open_in_process_hive",
    "percentile",
    "rss_kib",
    "summary",
]

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def summary(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of samples given in seconds, in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    return percentile(ms, 0.5), percentile(ms, 0.99), ms[-1]


@asynccontextmanager
async def open_checkout(ref: str) -> AsyncIterator[Path]:
    """The tree of `ref` of this repository, exported to a temp dir (for A/B runs)."""
    tmp = Path(tempfile.mkdtemp(prefix="bb-", dir="/tmp"))
    try:
        archive = await anyio.run_process(["git", "-C", str(REPO), "archive", ref])
        await anyio.run_process(["tar", "-x", "-C", str(tmp)], input=archive.stdout)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a live (not zombie) pid, as the process runtime records it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


async def _wait(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    with anyio.fail_after(timeout):
        while not (value := await predicate()):
            await anyio.sleep(0.02)
        return value


class HiveDirs:
    """A hive's temp dir, environment and sockets, and the operator's tools against it."""

    def __init__(self, extra_env: Mapping[str, str] | None = None, repo: Path = REPO) -> None:
        self.repo = repo
        self.root = Path(tempfile.mkdtemp(prefix="bb-", dir="/tmp"))
        self.state = self.root / "s"
        self.run = self.root / "r"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HIVE_")},
            "HIVE_STATE_DIR": str(self.state),
            "HIVE_RUNTIME_DIR": str(self.run),
            "PYTHONPATH": str(repo),
            **(extra_env or {}),
        }

    @property
    def host_socket(self) -> Path:
        return self.run / "host.sock"

    def socket(self, name: str) -> Path:
        if name == "hm1nd":
            return self.run / "manager" / "mcp.sock"
        return self.run / "agents" / name / "mcp.sock"

    async def hive(self, *args: str) -> Any:
        """Run the `hive` admin CLI (of this checkout) and return its `--json` result."""
        out = await anyio.run_process(
            [sys.executable, "-m", "controller.cli_admin", "--json", *args],
            cwd=self.repo,
            env=self.env,
        )
        return json.loads(out.stdout)

    async def declare(self, agents: Mapping[str, bool], timeout: float = 60) -> None:
        """Push `agents/<name>/agent.toml` (enabled or not) and `hive approve` the push."""
        clone = self.root / "clone"
        env = {**self.env, **_GIT_ENV, "HOME": str(self.root)}

        async def git(*args: str) -> None:
            await anyio.run_process(["git", *args], cwd=clone, env=env)

        if not clone.exists():
            await anyio.run_process(
                ["git", "clone", "-q", str(self.state / "proposed.git"), str(clone)], env=env
            )
        for name, enabled in agents.items():
            spec = clone / "agents" / name / "agent.toml"
            spec.parent.mkdir(parents=True, exist_ok=True)
            spec.write_text(f'description = "bench {name}"\nenabled = {str(enabled).lower()}\n')
        await git("add", "-A")
        await git("commit", "-qm", "bench agents")
        await git("push", "-q", "origin", "HEAD:main")
        pending = await _wait(lambda: self.hive("approvals"), timeout, "the pending approval")
        await self.hive("approve", str(pending[-1]["id"]))

        async def sockets() -> bool:
            return all(self.socket(name).is_socket() for name in agents)

        await _wait(sockets, timeout, "the agents' sockets")

    async def harness_pid(self, name: str, timeout: float = 60) -> int:
        """The pid of the agent's running harness, as the process runtime recorded it."""

        async def running() -> int | None:
            rows = {r["name"]: r for r in await self.hive("agents")}
            if rows.get(name, {}).get("state") != "running":
                return None
            return int(json.loads((self.state / "agents" / name / "proc.json").read_text())["pid"])

        pid: int = await _wait(running, timeout, f"{name}'s harness to run")
        return pid

    def harness_pids(self) -> list[int]:
        """Pids of live harnesses; a recorded pid whose start time differs was recycled."""
        pids = []
        for path in self.state.glob("agents/*/proc.json"):
            try:
                proc = json.loads(path.read_text())
                pid = int(proc["pid"])
            except (OSError, ValueError, KeyError):
                continue
            if _start_time(pid) == proc.get("start_time"):
                pids.append(pid)
        return pids

    async def stop_harnesses(self) -> None:
        """Stop every harness still running (each leads its own session: signal its group)."""
        for pid in self.harness_pids():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                with anyio.move_on_after(5):
                    while _start_time(pid) is not None:
                        await anyio.sleep(0.02)
                    break

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@asynccontextmanager
async def open_daemon(
    extra_env: Mapping[str, str] | None = None, repo: Path = REPO
) -> AsyncIterator[HiveDirs]:
    """`hive-c0re serve --no-dashboard` of the code in `repo`, in a subprocess.

    Its pid is `dirs.env["BENCH_DAEMON_PID"]`."""
    dirs = HiveDirs(extra_env, repo)
    log = (dirs.root / "daemon.log").open("wb")
    process = await anyio.open_process(
        [sys.executable, "-m", "controller.cli_daemon", "serve", "--no-dashboard"],
        cwd=repo,
        env=dirs.env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    dirs.env["BENCH_DAEMON_PID"] = str(process.pid)
    try:

        async def up() -> bool:
            if process.returncode is not None:
                raise RuntimeError(f"hive-c0re exited early: {(dirs.root / 'daemon.log')}")
            return dirs.host_socket.is_socket()

        await _wait(up, 30, "host.sock")
        yield dirs
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await process.aclose()
            await dirs.stop_harnesses()
            log.close()
            dirs.remove()


@asynccontextmanager
async def open_in_process_hive() -> AsyncIterator[HiveDirs]:
    """The daemon's components served in this event loop; harnesses are sleepers."""
    from controller.daemon import build_hive
    from controller.settings import Settings

    dirs = HiveDirs()
    settings = Settings.from_env(
        dirs.env,
        dashboard_enabled=False,
        harness_command=(sys.executable, "-c", "import signal; signal.pause()"),
    )
    hive = build_hive(settings)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(hive.serve)
            try:
                yield dirs
            finally:
                # anyio trap: cancelling a unix-socket receive() just after its peer
                # closed logs InvalidStateError; let those settle first.
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await dirs.stop_harnesses()
        dirs.remove()
