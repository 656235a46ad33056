"""The process runtime (the embedded default): each agent is a harness process on this host.

An agent is "built" by writing `build.json` (rev, harness version, files) into its dir;
it runs as a harness process in its own session (so it outlives hive-c0re, as a container
would) with output appended to `harness.log`. `proc.json` records the pid and the kernel's
start time of that pid, so after a restart hive-c0re *adopts* a live agent instead of
starting a second one, and a recycled pid is never mistaken for the agent. Exits are seen
through a pidfd (works for adopted processes that are not our children too). A `stopped`
marker tells an exit we asked for from a crash. `destroy` removes the build and keeps the
agent's notes and credentials, as the nixos runtime keeps its bind-mounted dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gitstore.errors import GitStoreError
from gitstore.spec import MANAGER, check_name
from gitstore.store import clone_repository
from reconcilers.layout import Layout
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed

__all__ = ["PASSTHROUGH", "ProcessRuntime", "default_harness_command"]

PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "HIVE_CLAUDE_BIN",
    "HIVE_MODEL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PYTHONPATH",
    "DISABLE_TELEMETRY",
    "DISABLE_AUTOUPDATER",
    "DISABLE_ERROR_REPORTING",
    "HIVE_TURN_TIMEOUT",
    "HIVE_RETRY_BASE",
    "HIVE_WEB_HOST",
    "HIVE_WEB_TOKEN",
)


def default_harness_command(role: str) -> list[str]:
    """`hive-m1nd serve` / `hive-ag3nt serve`, from the same environment as hive-c0re."""
    script = "hive-m1nd" if role == "manager" else "hive-ag3nt"
    beside = Path(sys.executable).parent / script
    if beside.exists():
        return [str(beside), "serve"]
    return [sys.executable, "-m", "harness.cli", script, "serve"]


def _start_time(pid: int) -> str | None:
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


def _read_json(path: str | Path) -> dict[str, object] | None:
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


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        layout: Layout,
        *,
        proposed_repo: Path,
        harness_command: Callable[[str], Sequence[str]] = default_harness_command,
        environ: Mapping[str, str] | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self.layout = layout
        self.proposed_repo = proposed_repo
        self.harness_command = harness_command
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_grace = stop_grace
        self._exits_send: MemoryObjectSendStream[str]
        self._exits_receive: MemoryObjectReceiveStream[str]
        self._exits_send, self._exits_receive = anyio.create_memory_object_stream[str](1000)
        self._watched: dict[str, int] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch agents for exits (adopting the live ones) until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for name in await self.names():
                obs = await self.observe(name)
                if obs.state is ContainerState.RUNNING and obs.pid is not None:
                    self._watch(name, obs.pid)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._exits_send.close()
                self._exits_receive.close()

    def name_problem(self, name: str) -> str | None:
        return None

    # --- reading -------------------------------------------------------------------

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        base = self.layout.agent_dir(name)
        return base / "build.json", base / "proc.json", base / "stopped"

    async def names(self) -> list[str]:
        root = self.layout.state_dir / "agents"

        def scan() -> list[str]:
            try:
                entries = os.listdir(root)
            except FileNotFoundError:
                return []
            return sorted(
                n
                for n in entries
                if not n.startswith(".") and os.path.exists(os.path.join(root, n, "build.json"))
            )

        return await anyio.to_thread.run_sync(scan)

    async def observe(self, name: str) -> Observed:
        return self._observe(check_name(name))

    def _observe(self, name: str) -> Observed:
        # Plain string paths: resync observes every agent in one pass on the event loop,
        # and pathlib's joins cost about as much as the reads (bench/bench_resync.py).
        base = os.path.join(self.layout.state_dir, "agents", name)
        build = _read_json(os.path.join(base, "build.json"))
        if build is None:
            return Observed(name, ContainerState.MISSING)
        rev = str(build.get("rev", "")) or None
        version = str(build.get("harness_version", "")) or None
        proc = _read_json(os.path.join(base, "proc.json")) or {}
        pid = proc.get("pid")
        if isinstance(pid, int) and _start_time(pid) == proc.get("start_time"):
            started = proc.get("started_at")
            return Observed(
                name,
                ContainerState.RUNNING,
                rev,
                version,
                pid,
                float(started) if isinstance(started, int | float) else None,
            )
        if os.path.exists(os.path.join(base, "stopped")) or not proc:
            return Observed(name, ContainerState.STOPPED, rev, version)
        return Observed(
            name,
            ContainerState.CRASHED,
            rev,
            version,
            message=f"exited unasked; see {self.log_path(name)}",
        )

    def log_path(self, name: str) -> Path:
        return self.layout.agent_dir(name) / "harness.log"

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        path = self.log_path(check_name(name))

        def tail() -> list[str]:
            try:
                with path.open("rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    size = fh.tell()
                    fh.seek(max(0, size - 256 * lines))
                    data = fh.read().decode("utf-8", "replace")
            except OSError:
                return []
            return data.splitlines()[-lines:]

        return await anyio.to_thread.run_sync(tail)

    # --- acting --------------------------------------------------------------------

    async def create(self, build: AgentBuild) -> None:
        await anyio.to_thread.run_sync(self._make_dirs, build.name)
        clone = self.layout.agents_clone()
        if build.name == MANAGER and not clone.exists():
            try:
                await clone_repository(self.proposed_repo, clone)
            except GitStoreError as exc:
                raise ContainerError(str(exc)) from exc
        # Last: build.json is what makes the agent exist, so a failed create leaves none.
        await anyio.to_thread.run_sync(self._write_build, build)

    def _make_dirs(self, name: str) -> None:
        layout = self.layout
        for path in (
            layout.agent_dir(name),
            layout.claude_dir(name),
            layout.notes_dir(name),
            layout.socket_dir(name),
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _write_build(self, build: AgentBuild) -> None:
        _write_json(
            self.layout.agent_dir(build.name) / "build.json",
            {
                "rev": build.rev,
                "harness_version": build.harness_version,
                "role": build.role,
                "port": build.port,
                "files": {k: v.decode("utf-8", "replace") for k, v in build.files.items()},
            },
        )

    async def update(self, build: AgentBuild) -> None:
        was_running = (await self.observe(build.name)).state is ContainerState.RUNNING
        if was_running:
            await self.stop(build.name)
        await self.create(build)
        if was_running:
            await self.start(build.name)

    async def start(self, name: str) -> None:
        check_name(name)
        obs = await self.observe(name)
        if obs.state is ContainerState.RUNNING:
            return
        if obs.state is ContainerState.MISSING:
            raise ContainerError(f"agent {name} is not created")
        pid = await anyio.to_thread.run_sync(self._spawn, name)
        self._watch(name, pid)

    def _env(self, name: str, build: Mapping[str, object]) -> dict[str, str]:
        env = {
            k: v
            for k, v in self.environ.items()
            if k in PASSTHROUGH or k.startswith("CLAUDE_CODE_")
        }
        env.update(
            {
                "HIVE_AGENT": name,
                "HIVE_SOCKET": str(self.layout.socket(name)),
                "HIVE_STATE": str(self.layout.notes_dir(name)),
                "HIVE_WEB_PORT": str(build.get("port", "")),
                "CLAUDE_CONFIG_DIR": str(self.layout.claude_dir(name)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if name == MANAGER:
            env["HIVE_AGENTS_DIR"] = str(self.layout.agents_clone())
        return env

    def _spawn(self, name: str) -> int:
        build_path, proc_path, stopped = self._paths(name)
        build = _read_json(build_path) or {}
        argv = list(self.harness_command(str(build.get("role", "agent"))))
        with self.log_path(name).open("ab") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(name, build),
                    cwd=self.layout.notes_dir(name),
                    start_new_session=True,
                )
            except OSError as exc:
                raise ContainerError(f"cannot start {argv[0]}: {exc}") from exc
        start = _start_time(proc.pid)
        _write_json(
            proc_path,
            {"pid": proc.pid, "start_time": start, "started_at": time.time(), "argv": argv},
        )
        stopped.unlink(missing_ok=True)
        # The Popen object is dropped; the exit watcher reaps the child through waitpid.
        proc.returncode = 0
        return proc.pid

    def _watch(self, name: str, pid: int) -> None:
        if self._tg is None or self._watched.get(name) == pid:
            return
        self._watched[name] = pid
        self._tg.start_soon(self._await_exit, name, pid)

    async def _await_exit(self, name: str, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = -1
        try:
            if fd >= 0:
                await anyio.wait_readable(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        _reap(pid)
        if self._watched.get(name) == pid:
            del self._watched[name]
        if not self._paths(name)[2].exists():
            with contextlib.suppress(anyio.WouldBlock):
                self._exits_send.send_nowait(name)

    async def stop(self, name: str) -> None:
        check_name(name)
        _, _, stopped = self._paths(name)
        if not stopped.parent.exists():
            return
        stopped.touch()
        obs = await self.observe(name)
        if obs.state is not ContainerState.RUNNING or obs.pid is None:
            return
        await _terminate(obs.pid, self.stop_grace)

    async def destroy(self, name: str) -> None:
        await self.stop(name)
        build_path, proc_path, _ = self._paths(name)
        build_path.unlink(missing_ok=True)
        proc_path.unlink(missing_ok=True)

    async def exits(self) -> AsyncIterator[str]:
        async for name in self._exits_receive:
            yield name


async def _terminate(pid: int, grace: float) -> None:
    """SIGTERM the agent's process group, then SIGKILL after `grace` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        with anyio.move_on_after(grace) as scope:
            await anyio.wait_readable(fd)
        if scope.cancelled_caught:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with anyio.move_on_after(grace):
                await anyio.wait_readable(fd)
    finally:
        os.close(fd)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect an exited child of ours; WNOHANG never blocks (the pidfd said it exited)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
