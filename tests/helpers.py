"""Test helpers: git clones and pushes with the real CLI, a hive running in-process."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio

from controller.hive import Hive
from controller.protocol import Client, connect_client
from controller.settings import Settings
from gitstore.errors import RefMovedError
from gitstore.store import GitStore
from hyperhive.daemon import build_hive

FAKE_HARNESS = Path(__file__).parent / "fakes" / "sleeper.py"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Op Erator",
    "GIT_AUTHOR_EMAIL": "op@example.test",
    "GIT_COMMITTER_NAME": "Op Erator",
    "GIT_COMMITTER_EMAIL": "op@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


class Clone:
    """A working clone of the proposed repo, as an operator's laptop would have."""

    def __init__(self, path: Path, remote: Path) -> None:
        self.path = path
        subprocess.run(
            ["git", "clone", "-q", str(remote), str(path)],
            check=True,
            env={**os.environ, **GIT_ENV},
        )
        git(path, "config", "user.name", "Op Erator")
        git(path, "config", "user.email", "op@example.test")

    def write(self, rel: str, text: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, rel: str) -> None:
        git(self.path, "rm", "-rq", rel)

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", message)
        return git(self.path, "rev-parse", "HEAD")

    def commit_push(self, message: str, branch: str = "main") -> str:
        sha = self.commit(message)
        self.push(branch)
        return sha

    def push(self, branch: str = "main", *, force: bool = False) -> None:
        git(self.path, "push", "-q", *(["-f"] if force else []), "origin", f"HEAD:{branch}")

    def checkout(self, branch: str, start: str = "origin/main") -> None:
        git(self.path, "fetch", "-q", "origin")
        git(self.path, "checkout", "-qB", branch, start)

    def add_agent(self, name: str, description: str = "an agent", **extra: str) -> None:
        lines = [f'description = "{description}"'] + [f"{k} = {v}" for k, v in extra.items()]
        self.write(f"agents/{name}/agent.toml", "\n".join(lines) + "\n")


def hive_settings(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": root / "state",
        "runtime_dir": root / "run",
        "resync_interval": 30.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.5,
        "crash_backoff": 0.05,
        "crash_window": 30.0,
        "stop_grace": 2.0,
        "harness_command": (sys.executable, str(FAKE_HARNESS)),
        "dashboard_enabled": False,
    }
    values.update(overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    return Settings.from_env(env, **values)


@asynccontextmanager
async def running_hive(
    settings: Settings, build: Callable[[Settings], Hive] = build_hive
) -> AsyncIterator[Hive]:
    """A hive serving in this process; its agents are stopped once it has shut down (a
    reconcile still in flight could otherwise start one again)."""
    hive = build(settings)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(hive.serve)
            try:
                yield hive
            finally:
                # anyio trap: cancelling a unix-socket receive() just after its peer closed
                # raises InvalidStateError in a reader callback; let those settle first.
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stop_agents(hive)


async def connect_harness(hive: Hive, name: str) -> Client:
    """A connection to an agent's socket with its harness's rights: the test stands in for
    the harness (an agent held stopped has none), so it also writes the key as the runtime
    would when it starts one."""
    key_file = hive.layout.harness_key(name)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
    return await connect_client(hive.layout.socket(name), [("auth", {"key": key_file.read_text()})])


@asynccontextmanager
async def admin(hive: Hive) -> AsyncIterator[Client]:
    client = await connect_client(hive.layout.host_socket)
    async with client:
        yield client


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)


async def stop_agents(hive: Hive, limit: int = 16) -> int:
    """Stop every agent of the hive's runtime, `limit` at a time; returns how many. Pods
    in a (fake) cluster are no processes of ours: nothing to stop there."""
    if hive.runtime.name == "kubernetes":
        return 0
    names = await hive.runtime.names()
    slots = anyio.Semaphore(limit)

    async def stop(name: str) -> None:
        async with slots:
            await hive.runtime.stop(name)

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(stop, name)
    return len(names)


@contextmanager
def holding_git_lock(store: GitStore) -> Iterator[threading.Event]:
    """Another thread holds the store's lock (as a slow git operation would) until the
    returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:  # the lock every hop takes; what a slow operation holds
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        yield release
    finally:
        release.set()
        thread.join()


async def land(store: GitStore, sha: str, approval_id: int = 1, approver: str = "op") -> str:
    """Merge `sha` into applied main as approve does (the merge, then the compare-and-swap
    move), but without hive-c0re's record: for gitstore tests, and to stand for what a
    script (or a crash) leaves behind. A move that lost the compare-and-swap to another
    writer is merged again onto what that writer left."""
    while True:
        head = await store.applied_head()
        try:
            return await store.approve(
                sha, base=head, approval_id=approval_id, approver=approver, intend=_no_record
            )
        except RefMovedError:
            continue


def _no_record(new: str) -> None:
    """`land` writes no record: that is the point of it."""


def kill_strays(root: Path) -> list[int]:
    """SIGKILL every process whose `HIVE_STATE` lies under `root` (an agent a daemon under
    test was starting when it stopped, so no proc.json recorded it); returns their pids."""
    killed = []
    prefix = f"HIVE_STATE={root}/".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if any(var.startswith(prefix) for var in environ.split(b"\0")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def kill_agents_of(state: Path) -> None:
    """SIGTERM every agent a hive-c0re subprocess left behind (agents outlive it)."""
    for proc_json in (state / "agents").glob("*/proc.json"):
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.killpg(json.loads(proc_json.read_text())["pid"], signal.SIGTERM)


def wait_on_daemon(
    proc: subprocess.Popen[bytes], log: Path, predicate: Callable[[], Any], timeout: float = 30
) -> Any:
    """Poll `predicate` until it is truthy, while a hive-c0re subprocess stays alive
    (its log tail says why when it died or time ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"hive-c0re died:\n{log.read_text()[-3000:]}"
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; daemon log:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
