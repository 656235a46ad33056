"""A full disk under a real `hive-c0re serve`: "no space left on device", nothing changed,
the daemon lives on, and all works again once there is space.

The state dir is a small tmpfs mounted in a mount namespace of the daemon's own
(`unshare -m`), so the disk that fills is the real one every write goes to (sqlite's
WAL, git's objects); the test reaches into it through `/proc/<pid>/root`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import kill_strays, wait_on_daemon

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="mounting a tmpfs in a mount namespace needs root and unshare",
    ),
]


class FullDiskDaemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
        self.env.update({"HIVE_STATE_DIR": str(self.state), "HIVE_RUNTIME_DIR": str(root / "run")})
        self.log = root / "daemon.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"',
                    str(self.state),
                    sys.executable,
                    "-m",
                    "hyperhive.cli_daemon",
                    "serve",
                    "--no-dashboard",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait(lambda: self.request("status").get("ok"))

    @property
    def inside(self) -> Path:
        """The state dir as the daemon sees it (its tmpfs)."""
        return Path(f"/proc/{self.proc.pid}/root") / self.state.relative_to("/")

    def request(self, cmd: str, *, on: str = "host.sock", **args: Any) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(40)
                sock.connect(str(self.root / "run" / on))
                sock.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        answer: dict[str, Any] = json.loads(data) if data else {}
        return answer

    def result(self, cmd: str, **args: Any) -> Any:
        answer = self.request(cmd, **args)
        assert answer.get("ok"), answer
        return answer["result"]

    def wait(self, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        return wait_on_daemon(self.proc, self.log, predicate, timeout)

    @contextlib.contextmanager
    def disk_full(self) -> Iterator[None]:
        filler = self.inside / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            block = b"\0" * 65536
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
            with contextlib.suppress(OSError):
                while True:  # the last few bytes too
                    os.write(fd, b"\0")
        finally:
            os.close(fd)
        try:
            yield
        finally:
            filler.unlink()

    def stop(self) -> None:
        pids = []
        for proc_json in (self.inside / "agents").glob("*/proc.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                pids.append(int(json.loads(proc_json.read_text())["pid"]))
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        kill_strays(self.root)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[FullDiskDaemon]:
    d = FullDiskDaemon(short_dir)
    try:
        yield d
    finally:
        d.stop()


def test_a_full_disk_says_no_space_left_changes_nothing_and_passes(
    daemon: FullDiskDaemon,
) -> None:
    # The manager proposes alice (git cannot reach into the daemon's namespace from here).
    spawned = daemon.request("request_spawn", on="manager/mcp.sock", name="alice")
    assert spawned.get("ok"), spawned
    (approval,) = daemon.result("approvals")
    applied = daemon.result("status")["applied_sha"]

    with daemon.disk_full():
        sent = daemon.request("send", to="hm1nd", body="x" * 100_000)
        assert sent["error"]["code"] == "no_space", sent
        assert "no space left on device" in sent["error"]["message"]
        assert daemon.result("messages") == []

        approved = daemon.request("approve", id=approval["id"])
        assert approved["error"]["code"] == "no_space", approved
        assert "no space left on device" in approved["error"]["message"]
        (still,) = daemon.result("approvals")
        assert (still["id"], still["status"]) == (approval["id"], "pending")
        assert daemon.result("status")["applied_sha"] == applied
        # The checkpoints that cannot write do not end the daemon either.
        daemon.wait(lambda: "checkpoints of" in daemon.log.read_text())

    assert daemon.result("send", to="hm1nd", body="there is room again")["id"] >= 1
    moved = daemon.result("approve", id=approval["id"])
    assert moved["status"] == "approved"
    assert daemon.result("status")["applied_sha"] == moved["applied_sha"] != applied
    assert [m["body"] for m in daemon.result("messages")] == ["there is room again"]
