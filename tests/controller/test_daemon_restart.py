"""The real `hive-c0re serve` process: SIGKILLed and restarted, nothing is lost or redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.bus import Bus
from controller.gate import Gate
from controller.store import Store
from gitstore.store import GitStore
from tests.helpers import Clone, kill_agents_of, land

pytestmark = pytest.mark.timeout(120)


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
        self.env.update(
            {"HIVE_STATE_DIR": str(root / "state"), "HIVE_RUNTIME_DIR": str(root / "run")}
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hyperhive.cli_daemon",
                "serve",
                "--no-dashboard",
                "--resync",
                "1",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait(lambda: self.hive("status", check=False).returncode == 0)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def hive(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller.cli_admin", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def json(self, *args: str) -> Any:
        return json.loads(self.hive("--json", *args).stdout)

    def agent(self, name: str) -> dict[str, Any]:
        return next(a for a in self.json("agents") if a["name"] == name)

    def wait(self, predicate: Any, timeout: float = 30) -> Any:
        import time

        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                log = (self.root / "daemon.log").read_text()[-3000:]
                raise AssertionError(f"timed out; daemon log:\n{log}")
            time.sleep(0.05)

    def pid_of(self, name: str) -> int:
        proc = json.loads((self.root / "state" / "agents" / name / "proc.json").read_text())
        return int(proc["pid"])

    def stop_agents(self) -> None:
        kill_agents_of(self.root / "state")


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    d = Daemon(short_dir)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.terminate()
            d.proc.wait(10)
        d.stop_agents()


def running(d: Daemon, name: str) -> bool:
    row = d.agent(name)
    return bool(row["state"] == "running" and row["ready"])


def test_a_sigkilled_daemon_restarts_keeps_approvals_adopts_agents_and_redoes_nothing(
    daemon: Daemon, short_dir: Path
) -> None:
    repos = daemon.json("repos")
    clone = Clone(short_dir / "clone", Path(repos["proposed"]))
    clone.add_agent("alice")
    clone.commit_push("alice")
    (first,) = daemon.wait(lambda: daemon.json("approvals"))
    approved = daemon.json("approve", str(first["id"]))
    daemon.wait(lambda: running(daemon, "alice"))
    alice_pid = daemon.pid_of("alice")
    manager_pid = daemon.pid_of("hm1nd")
    clone.add_agent("bob")
    clone.commit_push("bob", "feature/bob")
    (pending,) = daemon.wait(lambda: daemon.json("approvals"))
    runs_before = len((short_dir / "daemon.log").read_text())

    daemon.kill()
    daemon.start()

    assert daemon.json("status")["applied_sha"] == approved["applied_sha"]
    (still,) = daemon.json("approvals")
    assert (still["id"], still["sha"], still["status"]) == (
        pending["id"],
        pending["sha"],
        "pending",
    )
    assert len(daemon.json("approvals", "--all")) == 2
    daemon.wait(lambda: running(daemon, "alice"))
    log = (short_dir / "state" / "agents" / "alice" / "harness.log").read_text()
    assert daemon.pid_of("alice") == alice_pid, log + (short_dir / "daemon.log").read_text()
    assert daemon.pid_of("hm1nd") == manager_pid
    assert runs_before > 0
    # The audit log survived the SIGKILL.
    assert "approval.approved" in daemon.hive("events", "--type", "approval").stdout
    daemon.json("approve", str(pending["id"]))
    daemon.wait(lambda: running(daemon, "bob"))
    assert daemon.pid_of("alice") == alice_pid
    assert len(daemon.json("approvals", "--all")) == 2


class Crash(Exception):
    """Stands for hive-c0re dying: raised where the record would be written."""


def crash_before_the_record(db: object, new: str) -> None:
    raise Crash


async def merge_then_crash(state: Path, approval_id: int, sha: str) -> str:
    """Run approve's own path (the merge, the gate's intent, the ref move) on the dead
    daemon's state dir, and die just before the record: what a crash there leaves."""
    store = Store(state / "hive.sqlite")
    try:
        git = GitStore(state)
        gate = Gate(store, Bus(), git)
        await gate.open(lambda db, move: None)
        with pytest.raises(Crash):
            async with gate.moving() as mover:
                await mover.approve(
                    sha, approval_id=approval_id, approver="op", settle=crash_before_the_record
                )
        return await git.applied_ref()
    finally:
        store.close()


def test_an_approval_merged_before_a_crash_is_recorded_as_approved_at_the_next_start(
    daemon: Daemon, short_dir: Path
) -> None:
    repos = daemon.json("repos")
    clone = Clone(short_dir / "clone", Path(repos["proposed"]))
    clone.add_agent("alice")
    sha = clone.commit_push("alice", "feature/alice")
    (pending,) = daemon.wait(lambda: daemon.json("approvals"))
    daemon.kill()
    new = anyio.run(merge_then_crash, short_dir / "state", pending["id"], sha)
    daemon.start()
    status = daemon.json("status")
    assert (status["applied_sha"], status["alarm"]) == (new, None)
    (recovered,) = [a for a in daemon.json("approvals", "--all") if a["status"] == "approved"]
    assert (recovered["id"], recovered["applied_sha"]) == (pending["id"], new)
    assert recovered["approver"] == "op"
    assert "recorded at the next start" in recovered["reason"]
    assert daemon.json("approvals") == []
    daemon.wait(lambda: running(daemon, "alice"))
    moved = [e for e in daemon.json("events", "--type", "applied") if e["type"] == "applied.moved"]
    assert moved[0]["new"] == new and moved[0]["recovered"] is True


def test_a_merge_nobody_recorded_is_an_alarm_at_start_never_a_recovery(
    daemon: Daemon, short_dir: Path
) -> None:
    repos = daemon.json("repos")
    clone = Clone(short_dir / "clone", Path(repos["proposed"]))
    clone.add_agent("alice")
    sha = clone.commit_push("alice", "feature/alice")
    (pending,) = daemon.wait(lambda: daemon.json("approvals"))
    recorded = daemon.json("status")["applied_sha"]
    daemon.kill()
    # The same merge, written by a script while the daemon was down: no intent, no record.
    anyio.run(land, GitStore(short_dir / "state"), sha, pending["id"])
    daemon.start()
    status = daemon.json("status")
    assert status["applied_sha"] == recorded
    assert status["alarm"]["found_sha"] == sha
    assert daemon.json("approvals")[0]["status"] == "pending"
    daemon.wait(lambda: running(daemon, "hm1nd"))
    assert "alice" not in {a["name"] for a in daemon.json("agents")}
    assert "alarm: applied_moved" in daemon.hive("status").stdout
    # The operator's way out, from the CLI: back to what hive-c0re recorded.
    out = daemon.hive("applied", "reset").stdout
    assert f"from {sha[:12]} to the recorded {recorded[:12]}" in out
    assert daemon.json("status")["alarm"] is None
    assert "alarm: none" in daemon.hive("status").stdout


def test_the_admin_cli_has_help_tables_json_and_exit_codes(daemon: Daemon) -> None:
    assert "approve" in daemon.hive("--help").stdout
    table = daemon.hive("agents").stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "ROLE", "STATE"]
    assert "hm1nd" in table
    missing = daemon.hive("approve", "999", check=False)
    assert missing.returncode == 1
    assert "no approval #999" in missing.stderr
    bad = daemon.hive("start", "Not_A_Name", check=False)
    assert bad.returncode == 1 and "invalid agent name" in bad.stderr
    usage = daemon.hive("approve", check=False)
    assert usage.returncode == 2
    env = {**daemon.env, "HIVE_RUNTIME_DIR": "/nonexistent"}
    gone = subprocess.run(
        [sys.executable, "-m", "controller.cli_admin", "status"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert gone.returncode == 3 and "is hive-c0re running?" in gone.stderr
    status = daemon.json("status")
    assert set(status) >= {"version", "applied_sha", "agents", "pending_approvals"}


def test_sigterm_shuts_down_cleanly_and_leaves_agents_running(
    daemon: Daemon, short_dir: Path
) -> None:
    daemon.wait(lambda: running(daemon, "hm1nd"))
    manager = daemon.pid_of("hm1nd")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert not (short_dir / "run" / "host.sock").exists()
    os.kill(manager, 0)  # agents outlive the daemon, as containers do
    assert "shutting down" in (short_dir / "daemon.log").read_text()
