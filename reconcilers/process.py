"""The process runtime (the embedded default): each agent is a harness process on this host.

An agent is "built" by writing `build.json` (rev, harness version, files) into its dir;
it runs as a harness process in its own session (so it outlives hive-c0re, as a container
would) with output appended to `harness.log`, inside a bubblewrap sandbox of its own
(`reconcilers.sandbox`) unless hive-c0re runs `--unsandboxed`; without bwrap it refuses to
start agents. `proc.json` records the harness's pid (for a sandbox: its pid on the host,
from bwrap's `--info-fd`, besides bwrap's own) and the kernel's start time of that pid, so
after a restart hive-c0re *adopts* a live agent instead of starting a second one, and a
recycled pid is never mistaken for the agent. Exits are seen through a pidfd (works for
adopted processes that are not our children too). A `stopped` marker tells an exit we
asked for from a crash. `destroy` removes the build and keeps the agent's notes and
credentials, as the nixos runtime keeps its bind-mounted dirs.

Every start mints the harness's credential: written to `key/harness.key` (which no
sandbox binds) for the agent socket to check, and handed to the harness through an
inherited pipe (`HIVE_KEY_FD`) that the harness reads once at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gitstore.errors import GitStoreError
from gitstore.spec import MANAGER, check_name
from gitstore.store import clone_repository
from reconcilers import sandbox
from reconcilers.launch import launch
from reconcilers.layout import Layout
from reconcilers.proc import (
    mint_key,
    read_json,
    reap,
    start_time,
    terminate,
    wait_exit,
    write_json,
)
from reconcilers.runtime import AgentBuild, ContainerError, ContainerState, Observed

__all__ = ["PASSTHROUGH", "ProcessRuntime", "default_harness_command"]

log = logging.getLogger(__name__)

PASSTHROUGH = (
    "PATH",
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
    "HIVE_WARM_IDLE",
    "HIVE_WEB_HOST",
    "HIVE_WEB_TOKEN",
)


def default_harness_command(role: str) -> list[str]:
    """`hive-m1nd serve` / `hive-ag3nt serve`, from the same environment as hive-c0re."""
    script = "hive-m1nd" if role == "manager" else "hive-ag3nt"
    beside = Path(sys.executable).parent / script
    if beside.exists():
        return [str(beside), "serve"]
    return [sys.executable, "-m", "hyperhive.harness", script, "serve"]


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
        sandboxed: bool = True,
    ) -> None:
        self.layout = layout
        self.proposed_repo = proposed_repo
        self.harness_command = harness_command
        self.environ = dict(os.environ if environ is None else environ)
        self.stop_grace = stop_grace
        self.sandboxed = sandboxed
        # "bwrap" or "none": what `status` and the dashboard say agents run in.
        self.sandbox = "bwrap" if sandboxed else "none"
        self.bwrap = sandbox.find_bwrap(self.environ) if sandboxed else None
        self._exits_send: MemoryObjectSendStream[str]
        self._exits_receive: MemoryObjectReceiveStream[str]
        self._exits_send, self._exits_receive = anyio.create_memory_object_stream[str](1000)
        self._watched: dict[str, int] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        # One verb at a time per agent: the reconciler and an operator's `hive start`
        # may ask at once, and two starts would spawn two harnesses (and mint two keys).
        self._locks: dict[str, anyio.Lock] = {}

    def _lock(self, name: str) -> anyio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = anyio.Lock()
        return lock

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch agents for exits (adopting the live ones) until cancelled."""
        if self.sandboxed and self.bwrap is None:
            log.error("%s; no agent will start", sandbox.INSTALL_HINT)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for name in await self.names():
                obs = await self.observe(name)
                if obs.state is ContainerState.RUNNING and obs.pid is not None:
                    if self.sandboxed and self._proc(name).get("sandbox") != "bwrap":
                        # Started by an --unsandboxed hive-c0re: stop it, and the
                        # reconciler starts it again inside a sandbox.
                        log.warning("%s runs unsandboxed; restarting it in a sandbox", name)
                        await self.stop(name)
                        continue
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

    def _proc(self, name: str) -> dict[str, object]:
        return read_json(self._paths(name)[1]) or {}

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
        build = read_json(os.path.join(base, "build.json"))
        if build is None:
            return Observed(name, ContainerState.MISSING)
        rev = str(build.get("rev", "")) or None
        version = str(build.get("harness_version", "")) or None
        proc = read_json(os.path.join(base, "proc.json")) or {}
        pid = proc.get("pid")
        if isinstance(pid, int) and start_time(pid) == proc.get("start_time"):
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
        async with self._lock(build.name):
            await self._create(build)

    async def _create(self, build: AgentBuild) -> None:
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
            layout.home_dir(name),
            layout.key_dir(name),
            layout.page_dir(name),
            layout.socket_dir(name),
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _write_build(self, build: AgentBuild) -> None:
        write_json(
            self.layout.agent_dir(build.name) / "build.json",
            {
                "rev": build.rev,
                "harness_version": build.harness_version,
                "role": build.role,
                "files": {k: v.decode("utf-8", "replace") for k, v in build.files.items()},
            },
        )

    async def update(self, build: AgentBuild) -> None:
        async with self._lock(build.name):
            was_running = (await self.observe(build.name)).state is ContainerState.RUNNING
            if was_running:
                await self._stop(build.name)
            await self._create(build)
            if was_running:
                await self._start(build.name)

    async def start(self, name: str) -> None:
        check_name(name)
        async with self._lock(name):
            await self._start(name)

    async def _start(self, name: str) -> None:
        obs = await self.observe(name)
        if obs.state is ContainerState.RUNNING:
            return
        if obs.state is ContainerState.MISSING:
            raise ContainerError(f"agent {name} is not created")
        if self.sandboxed and self.bwrap is None:
            raise ContainerError(sandbox.INSTALL_HINT)
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
                "CLAUDE_CONFIG_DIR": str(self.layout.claude_dir(name)),
                "HOME": str(self.layout.home_dir(name)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if name == MANAGER:
            env["HIVE_AGENTS_DIR"] = str(self.layout.agents_clone())
        return env

    def _spawn(self, name: str) -> int:
        build_path, proc_path, stopped = self._paths(name)
        build = read_json(build_path) or {}
        command = list(self.harness_command(str(build.get("role", "agent"))))
        env = self._env(name, build)
        box = None
        if self.sandboxed:
            host = sandbox.host_mounts(command, env)
            box = sandbox.for_agent(self.layout, name, host=host, proposed_repo=self.proposed_repo)
        launched = launch(
            command,
            env=env,
            cwd=self.layout.notes_dir(name),
            log_path=self.log_path(name),
            # Every start mints a new key; the old one dies with the old harness.
            key=mint_key(self.layout.harness_key(name)),
            page_socket=self.layout.page_socket(name),
            sandbox=box,
            bwrap=self.bwrap or "bwrap",
        )
        pid = launched.pid
        write_json(
            proc_path,
            {
                "pid": pid,
                "start_time": start_time(pid),
                "started_at": time.time(),
                "argv": command,
                "sandbox": self.sandbox,
                "sandbox_pid": launched.child_pid,
            },
        )
        stopped.unlink(missing_ok=True)
        return pid

    def _watch(self, name: str, pid: int) -> None:
        if self._tg is None or self._watched.get(name) == pid:
            return
        self._watched[name] = pid
        self._tg.start_soon(self._await_exit, name, pid, self._child_pid(name, pid))

    def _child_pid(self, name: str, pid: int) -> int:
        """Our child for the harness `pid`: the bwrap process of its sandbox, or itself."""
        proc = self._proc(name)
        child = proc.get("sandbox_pid")
        return child if proc.get("pid") == pid and isinstance(child, int) else pid

    async def _await_exit(self, name: str, pid: int, child: int) -> None:
        await wait_exit(pid)
        await self._collect(pid, child)
        if self._watched.get(name) == pid:
            del self._watched[name]
        if not self._paths(name)[2].exists():
            with contextlib.suppress(anyio.WouldBlock):
                self._exits_send.send_nowait(name)

    async def stop(self, name: str) -> None:
        check_name(name)
        async with self._lock(name):
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        _, _, stopped = self._paths(name)
        if not stopped.parent.exists():
            return
        stopped.touch()
        obs = await self.observe(name)
        if obs.state is not ContainerState.RUNNING or obs.pid is None:
            return
        child = self._child_pid(name, obs.pid)
        await terminate(obs.pid, self.stop_grace, group=child == obs.pid)
        await self._collect(obs.pid, child)

    async def _collect(self, pid: int, child: int) -> None:
        """Reap our child once the harness `pid` has exited: the harness itself, or the
        bwrap process of its sandbox, which exits right after the harness it runs."""
        if child != pid:
            with anyio.move_on_after(self.stop_grace):
                await wait_exit(child)
        reap(child)

    async def destroy(self, name: str) -> None:
        check_name(name)
        async with self._lock(name):
            await self._stop(name)
            build_path, proc_path, _ = self._paths(name)
            build_path.unlink(missing_ok=True)
            proc_path.unlink(missing_ok=True)

    async def purge(self, name: str) -> bool:
        """Delete a destroyed agent's dirs (notes, history, credentials); False if none."""
        base = self.layout.agent_dir(check_name(name))
        if (base / "build.json").exists():
            raise ContainerError(f"agent {name} still exists; destroy it first")
        if not base.exists():
            return False
        await anyio.to_thread.run_sync(shutil.rmtree, base)
        return True

    async def exits(self) -> AsyncIterator[str]:
        async for name in self._exits_receive:
            yield name
