"""A real `hive-c0re serve` under a low open-files limit, flooded with connections by one
agent: the daemon lives on and keeps serving the operator and the other agents."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Clone, kill_agents_of, kill_strays, wait_on_daemon

pytestmark = pytest.mark.timeout(120)

FILE_LIMIT = 256
FLOOD = 2000


def _low_file_limit() -> None:
    # Soft and hard: the daemon raises its soft limit to the hard one at start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


class LimitedDaemon:
    """`hive-c0re serve` in a subprocess whose open-files limit is FILE_LIMIT."""

    def __init__(self, root: Path, *flags: str) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
        self.env.update(
            {"HIVE_STATE_DIR": str(root / "state"), "HIVE_RUNTIME_DIR": str(root / "run")}
        )
        self.log = root / "daemon.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hyperhive.cli_daemon", "serve", "--no-dashboard", *flags],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_low_file_limit,
            )
        self.wait(lambda: self.request(self.host, "status").get("ok"))

    @property
    def host(self) -> Path:
        return self.root / "run" / "host.sock"

    def socket_of(self, name: str) -> Path:
        return self.root / "run" / ("manager" if name == "hm1nd" else f"agents/{name}") / "mcp.sock"

    def hive(self, *args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "controller.cli_admin", "--json", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return json.loads(out.stdout)

    def request(self, path: Path, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
        """One request on a fresh connection; {} if the socket cannot be reached."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(str(path))
                return ask(sock, cmd)
        except OSError:
            return {}

    def wait(self, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        return wait_on_daemon(self.proc, self.log, predicate, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        kill_agents_of(self.root / "state")
        kill_strays(self.root)


def ask(sock: socket.socket, cmd: str) -> dict[str, Any]:
    sock.sendall(json.dumps({"id": 1, "cmd": cmd}).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    answer: dict[str, Any] = json.loads(data) if data else {}
    return answer


@pytest.fixture
def enough_files() -> Iterator[None]:
    """This process opens FLOOD connections itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-files limit {hard} is below the {need} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def flood(path: Path, count: int = FLOOD) -> Iterator[list[socket.socket]]:
    """`count` connection attempts to `path`, all held open until the block ends."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            socks.append(sock)
            # The backlog takes what the daemon has not accepted yet; past it, the
            # attempt fails: the daemon must survive either way.
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                sock.connect(str(path))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def refused(socks: list[socket.socket]) -> int:
    """How many of `socks` were told too_many_connections."""
    count = 0
    for sock in socks:
        with contextlib.suppress(BlockingIOError, OSError):
            if b"too_many_connections" in sock.recv(4096, socket.MSG_PEEK):
                count += 1
    return count


@pytest.fixture
def root(short_dir: Path) -> Path:
    return short_dir


def test_two_thousand_connections_from_one_agent_leave_everyone_else_served(
    root: Path, enough_files: None
) -> None:
    daemon = LimitedDaemon(root, "--agent-connections", "32")
    try:
        clone = Clone(root / "clone", Path(daemon.hive("repos")["proposed"]))
        # Held stopped: no harness of hers takes (or frees) a connection meanwhile.
        clone.add_agent("alice", enabled="false")
        clone.commit_push("alice")
        (approval,) = daemon.wait(lambda: daemon.hive("approvals"))
        daemon.hive("approve", str(approval["id"]))
        alice = daemon.socket_of("alice")
        daemon.wait(alice.exists)

        with flood(alice) as socks:
            # Everyone but alice is served while she holds every connection she can.
            # (Each within the wait's bound: a loaded machine may time out one connect.)
            assert daemon.wait(lambda: daemon.request(daemon.host, "status").get("ok"))
            assert daemon.wait(lambda: daemon.request(daemon.socket_of("hm1nd"), "inbox").get("ok"))
            # Alice got her 32 and each of the others was told why it was closed.
            daemon.wait(lambda: refused(socks) == FLOOD - 32)
            # (A connect may time out while a loaded daemon works through the flood:
            # try again; what matters is the answer once one comes.)
            over = daemon.wait(lambda: daemon.request(alice, "inbox"))
            assert over["error"]["code"] == "too_many_connections", over
            assert "limit" in over["error"]["message"]
        # Her connections closed, alice is served again.
        assert daemon.wait(lambda: daemon.request(alice, "inbox").get("ok"))
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()


def test_the_daemon_survives_running_out_of_file_descriptors(
    root: Path, enough_files: None
) -> None:
    # Caps above the descriptors the daemon has: accept() itself fails with EMFILE.
    daemon = LimitedDaemon(root, "--agent-connections", "5000", "--host-connections", "5000")
    try:
        with socket.socket(socket.AF_UNIX) as operator:
            operator.settimeout(5)
            operator.connect(str(daemon.host))
            with flood(daemon.socket_of("hm1nd")):
                daemon.wait(lambda: "Too many open files" in daemon.log.read_text())
                # A connection made before the flood is served throughout.
                assert ask(operator, "status")["ok"]
                assert daemon.proc.poll() is None
            assert ask(operator, "status")["ok"]
        # Once the descriptors are back, new connections are accepted again.
        assert daemon.wait(lambda: daemon.request(daemon.host, "status").get("ok"))
        assert daemon.wait(lambda: daemon.request(daemon.socket_of("hm1nd"), "inbox").get("ok"))
        assert "backing off" in daemon.log.read_text()
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
