"""Crash loops, holds and status conditions with real agent processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from controller.hive import Hive
from controller.protocol import ProtocolError
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def row(hive: Hive, name: str) -> dict[str, Any]:
    async with admin(hive) as client:
        rows = await client.call("agents")
    return next(r for r in rows if r["name"] == name)


async def add_alice(hive: Hive, short_dir: Path) -> None:
    clone = Clone(short_dir / "clone", hive.git.proposed_path)
    clone.add_agent("alice")
    clone.commit_push("alice")
    (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
    await hive.approvals.approve(approval.id)
    await wait_for(lambda: _is(hive, "alice", state="running", ready=True))


async def _is(hive: Hive, name: str, **want: Any) -> bool:
    r = await row(hive, name)
    return all(r[k] == v for k, v in want.items())


async def pid_of(hive: Hive, name: str) -> int | None:
    return (await hive.runtime.observe(name)).pid


async def test_a_crashed_agent_is_restarted(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await add_alice(hive, short_dir)
        pid = await pid_of(hive, "alice")
        assert pid is not None and pid != 1
        os.kill(pid, signal.SIGKILL)

        async def another_pid() -> bool:
            return (await pid_of(hive, "alice")) not in (None, pid)

        await wait_for(another_pid)

        async def restarted() -> bool:
            return any(r["action"] == "restart" for r in await hive.records.runs("alice"))

        await wait_for(restarted)
        await wait_for(lambda: _is(hive, "alice", state="running", ready=True))


async def test_a_crash_loop_becomes_stalled_until_the_operator_acts(short_dir: Path) -> None:
    settings = hive_settings(short_dir, crash_limit=3)
    async with running_hive(settings) as hive:
        await add_alice(hive, short_dir)
        (hive.layout.notes_dir("alice") / "crash").touch()
        async with admin(hive) as client:
            await client.call("restart", name="alice")
        await wait_for(lambda: _is(hive, "alice", stalled=True), timeout=15)
        r = await row(hive, "alice")
        assert r["reason"] == "CrashLoop"
        assert "crashed 3 times" in r["message"]
        assert r["state"] == "crashed"
        assert not r["ready"]
        log = hive.runtime.logs  # the log file keeps the harness's own words
        assert any("crashing on purpose" in line for line in await log("alice"))
        (hive.layout.notes_dir("alice") / "crash").unlink()
        async with admin(hive) as client:
            assert (await client.call("reconcile", name="alice")) == {"queued": ["alice"]}
        await wait_for(lambda: _is(hive, "alice", state="running", ready=True, stalled=False))


async def test_kill_leaves_a_hold_that_the_reconciler_respects(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await add_alice(hive, short_dir)
        async with admin(hive) as client:
            killed = await client.call("kill", name="alice")
            assert killed["hold"] == "killed"
            assert killed["state"] == "stopped"
            await hive.resync()
            await client.call("reconcile", name="alice")
            await hive.agent_queue.wait_idle()
            r = await row(hive, "alice")
            assert r["state"] == "stopped"
            assert r["hold"] == "killed"
            assert r["ready"] and r["reason"] == "Held"
            started = await client.call("start", name="alice")
            assert started["hold"] is None
        await wait_for(lambda: _is(hive, "alice", state="running", ready=True))


async def test_a_disabled_agent_is_kept_but_stopped(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await add_alice(hive, short_dir)
        clone = Clone(short_dir / "clone2", hive.git.proposed_path)
        clone.add_agent("alice", enabled="false")
        clone.commit_push("pause alice")
        (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
        await hive.approvals.approve(approval.id)
        await wait_for(lambda: _is(hive, "alice", state="stopped", ready=True, enabled=False))
        async with admin(hive) as client:
            with pytest.raises(ProtocolError, match="disabled"):
                await client.call("start", name="alice")


async def test_a_harness_upgrade_rebuilds_every_agent(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir, harness_version="1.0")) as hive:
        await add_alice(hive, short_dir)
    async with running_hive(hive_settings(short_dir, harness_version="2.0")) as hive:

        async def updated() -> bool:
            actions = {(r["name"], r["action"]) for r in await hive.records.runs(limit=20)}
            return {("alice", "update"), ("hm1nd", "update")} <= actions

        await wait_for(updated)
        await wait_for(lambda: _is(hive, "alice", harness_version="2.0", ready=True))
        await wait_for(lambda: _is(hive, "hm1nd", harness_version="2.0", ready=True))
