"""What the benchmarks share: a real hive (in-process, or the `hive-c0re serve` daemon), a
`watch` stream over host.sock with each event stamped on arrival, git from a clone,
percentiles, and the clean-up of every agent process a run started.

Importing this module puts the worktree it lives in first on `sys.path`, so a benchmark
measures the code beside it, not whatever checkout is pip-installed in editable mode.
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from controller.hive import Hive
from controller.protocol import ProtocolError, connect_client
from tests.helpers import GIT_ENV, hive_settings, running_hive

__all__ = [
    "REPO",
    "Daemon",
    "Stats",
    "Watch",
    "agent_names",
    "agent_pids",
    "agent_running",
    "agent_toml",
    "approval_created",
    "clone",
    "commit_all",
    "daemon_argv",
    "git",
    "git_async",
    "kill_leftovers",
    "open_daemon",
    "open_hive",
    "open_host_socket",
    "quiet_logs",
    "remove",
    "rss_kib",
    "scratch_dir",
    "stats",
    "verdict",
]

Event = dict[str, Any]


# --- figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Latencies in milliseconds; percentiles by nearest rank (p99 of 50 is the max)."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def line(self, label: str, width: int = 40) -> str:
        return (
            f"{label:<{width}} n={self.n:<4} p50={self.p50:8.2f} ms  p90={self.p90:8.2f} ms"
            f"  p99={self.p99:8.2f} ms  max={self.max:8.2f} ms"
        )


def _rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stats(seconds: Iterable[float]) -> Stats:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        raise ValueError("no samples")
    return Stats(
        n=len(ms),
        p50=statistics.median(ms),
        p90=_rank(ms, 0.90),
        p99=_rank(ms, 0.99),
        max=ms[-1],
        mean=statistics.fmean(ms),
    )


async def asgi_get(app: Any, path: str) -> tuple[int, int]:
    """GET `path` of an ASGI app in-process: (status, body bytes)."""
    raw, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": "GET",
        "path": raw,
        "raw_path": raw.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:7000"), (b"accept", b"text/html")],
        "scheme": "http",
        "server": ("127.0.0.1", 7000),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "root_path": "",
    }
    status = size = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            size += len(message.get("body", b""))

    await app(scope, receive, send)
    return status, size


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def agent_names(count: int, prefix: str = "b") -> list[str]:
    """`count` distinct agent names."""
    return [f"{prefix}{i:04d}" for i in range(count)]


def agent_toml(description: str, *, enabled: bool = True) -> str:
    return f'description = "{description}"\n' + ("" if enabled else "enabled = false\n")


# --- places and processes --------------------------------------------------------


def scratch_dir() -> Path:
    """A temp dir short enough for AF_UNIX socket paths (108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak) and Threads of a live process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def agent_pids(state_dir: Path) -> dict[str, int]:
    """The live agent processes recorded in `<state>/agents/*/proc.json`."""
    pids: dict[str, int] = {}
    for path in sorted((state_dir / "agents").glob("*/proc.json")):
        try:
            proc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = proc.get("pid")
        if isinstance(pid, int) and _start_time(pid) == proc.get("start_time"):
            pids[path.parent.name] = pid
    return pids


def kill_leftovers(state_dir: Path, grace: float = 5.0) -> int:
    """Stop every agent process still alive (by its recorded pid); returns how many.
    Blocking: it runs last, when nothing else is left to serve."""
    pids = agent_pids(state_dir)
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_start_time(p) for p in pids.values()):
        time.sleep(0.02)
    for pid in pids.values():
        if _start_time(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return len(pids)


@asynccontextmanager
async def open_hive(root: Path, **overrides: Any) -> AsyncIterator[Hive]:
    """A real hive served in-process (`build_hive`, host.sock included) with the sleeper
    harness, as `tests.helpers.hive_settings` configures it; its agents are stopped after
    it has shut down, and any straggler is killed by pid."""
    settings = hive_settings(root, **overrides)
    try:
        async with running_hive(settings) as hive:
            yield hive
    finally:
        kill_leftovers(settings.state_dir)


@dataclass(frozen=True)
class Daemon:
    pid: int
    argv: tuple[str, ...]
    state_dir: Path
    host_socket: Path
    log: Path


def daemon_argv(dashboard: bool = False, flags: Sequence[str] = ()) -> list[str]:
    """`hive-c0re serve`, the installed script beside this interpreter; the dashboard (on
    a free port) only when asked for; `flags` after."""
    script = Path(sys.executable).parent / "hive-c0re"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "hyperhive.cli_daemon"]
    dash = ["--dashboard", "127.0.0.1:0"] if dashboard else ["--no-dashboard"]
    return [*base, "serve", *dash, *flags]


@asynccontextmanager
async def open_daemon(
    root: Path, *, dashboard: bool = False, unsandboxed: bool = False, flags: Sequence[str] = ()
) -> AsyncIterator[Daemon]:
    """The real daemon as a subprocess, state and sockets under `root`, this worktree's
    code first on PYTHONPATH (passed on to its agents too); its agents in bubblewrap
    sandboxes unless `unsandboxed`. On exit: SIGTERM the daemon, then stop the agents it
    left running (they outlive it, as containers do)."""
    state, run = root / "state", root / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["HIVE_STATE_DIR"] = str(state)
    env["HIVE_RUNTIME_DIR"] = str(run)
    if unsandboxed:
        env["HIVE_UNSANDBOXED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    argv = daemon_argv(dashboard, flags)
    log_path = root / "daemon.log"
    with log_path.open("ab") as log:
        proc = await anyio.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root
        )
    daemon = Daemon(proc.pid, tuple(argv), state, run / "host.sock", log_path)
    try:
        with anyio.fail_after(30):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"hive-c0re exited: {log_path.read_text()[-2000:]}")
                try:
                    async with await connect_client(daemon.host_socket) as client:
                        await client.call("status")
                    break
                except ProtocolError:
                    await anyio.sleep(0.05)
        yield daemon
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with anyio.move_on_after(10):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proc.aclose()
        kill_leftovers(state)


@asynccontextmanager
async def open_host_socket(root: Path, *, daemon: bool) -> AsyncIterator[Path]:
    """host.sock of a hive in-process (sleeper harness) or of the daemon subprocess."""
    if daemon:
        async with open_daemon(root) as d:
            yield d.host_socket
    else:
        async with open_hive(root) as hive:
            yield hive.layout.host_socket


def remove(root: Path, keep: bool) -> None:
    if keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


# --- git ---------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def git(cwd: Path, *args: str) -> str:
    """Blocking git (set-up only: it stalls the event loop, and a hive in-process with it)."""
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=_git_env(), check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


async def git_async(cwd: Path, *args: str) -> str:
    """git off the event loop: what a timed push uses, so the hive keeps running."""
    done = await anyio.run_process(["git", *args], cwd=cwd, env=_git_env())
    return done.stdout.decode().strip()


def clone(remote: Path, path: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(remote), str(path)], check=True, env=_git_env())
    return path


def commit_all(path: Path, message: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-qm", message)
    return git(path, "rev-parse", "HEAD")


# --- the watch stream --------------------------------------------------------------


class Watch:
    """`watch` over host.sock (its own connection), every event kept with its arrival
    time (`time.perf_counter()`). Take `mark()` *before* acting, then `wait(pred, mark)`,
    so an event that arrives before the action returns is not missed."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self._arrived = anyio.Event()

    async def serve(self, socket: Path, *, task_status: TaskStatus[None]) -> None:
        async with await connect_client(socket) as client:
            stream = client.stream("watch")
            try:
                async for event in stream:
                    self.events.append((time.perf_counter(), event))
                    self._arrived.set()
                    self._arrived = anyio.Event()
                    if event.get("type") == "hello":
                        task_status.started()
            finally:
                await stream.aclose()

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, type_: str) -> list[Event]:
        return [e for _, e in self.events[mark:] if e.get("type") == type_]

    async def wait(
        self, predicate: Callable[[Event], bool], since: int, timeout: float = 30.0
    ) -> tuple[float, Event]:
        """The first event from index `since` on that satisfies `predicate`."""
        i = since
        with anyio.fail_after(timeout):
            while True:
                while i < len(self.events):
                    at, event = self.events[i]
                    i += 1
                    if predicate(event):
                        return at, event
                await self._arrived.wait()


def approval_created(sha: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return event.get("type") == "approval.created" and event["approval"]["sha"] == sha

    return match


def agent_running(name: str, rev: str) -> Callable[[Event], bool]:
    """An `agent.status` saying `name` is ready and running at `rev`."""

    def match(event: Event) -> bool:
        return (
            event.get("type") == "agent.status"
            and event.get("name") == name
            and event.get("state") == "running"
            and bool(event.get("ready"))
            and event.get("observed_rev") == rev
        )

    return match
