"""hive-c0re SIGKILLed in the middle of a turn: the turn still runs once.

The real `hive-c0re serve` process (process runtime, bubblewrap), a real harness and the
real claude CLI against the scripted fake API, which holds the model's reply until the
daemon has been killed and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.protocol import ProtocolError, connect_client
from harness.history import open_history
from tests.e2e.conftest import swarm_environ
from tests.fakes.anthropic import FakeAnthropic, open_fake_anthropic, text
from tests.helpers import Clone, kill_agents_of, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


class Daemon:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = {
            **env,
            "HIVE_STATE_DIR": str(root / "state"),
            "HIVE_RUNTIME_DIR": str(root / "run"),
        }
        self.proc: anyio.abc.Process | None = None
        self.last: dict[str, Any] | None = None

    async def start(self) -> None:
        with (self.root / "daemon.log").open("ab") as log:
            self.proc = await anyio.open_process(
                [sys.executable, "-m", "hyperhive.cli_daemon", "serve", "--no-dashboard"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await self.wait(self._answers)

    async def wait(self, predicate: Any, timeout: float = 60) -> Any:
        try:
            return await wait_for(predicate, timeout=timeout)
        except TimeoutError:
            logs = [self.root / "daemon.log", *self.root.glob("state/agents/*/harness.log")]
            tails = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out; last agent row {self.last}\n{tails}") from None

    async def _answers(self) -> bool:
        try:
            await self.call("status")
        except (OSError, ProtocolError):
            return False
        return True

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def call(self, cmd: str, **args: Any) -> Any:
        client = await connect_client(self.root / "run" / "host.sock")
        async with client:
            return await client.call(cmd, **args)

    async def agent(self, name: str) -> dict[str, Any] | None:
        rows = await self.call("agents")
        return next((row for row in rows if row["name"] == name), None)

    async def idle(self, name: str) -> bool:
        row = await self.agent(name)
        self.last = row
        return row is not None and row["ready"] and row["turn"] == "idle"

    def stop_agents(self) -> None:
        kill_agents_of(self.root / "state")


@contextlib.asynccontextmanager
async def running_daemon(root: Path, api: FakeAnthropic) -> AsyncIterator[Daemon]:
    daemon = Daemon(root, swarm_environ(api, root))
    await daemon.start()
    try:
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.returncode is None:
            daemon.proc.terminate()
            with anyio.fail_after(10):
                await daemon.proc.wait()
        daemon.stop_agents()


def woke_on(message_id: int) -> Any:
    return lambda r: f"New message #{message_id} from operator" in r.last_user_text


async def test_a_daemon_sigkilled_mid_turn_does_not_run_the_turn_twice(short_dir: Path) -> None:
    async with open_fake_anthropic() as api, running_daemon(short_dir, api) as daemon:
        repos = await daemon.call("repos")
        clone = Clone(short_dir / "clone", Path(repos["proposed"]))
        clone.add_agent("alice")
        clone.commit_push("alice")
        (approval,) = await daemon.wait(lambda: daemon.call("approvals", status="pending"))
        await daemon.call("approve", id=approval["id"])
        await daemon.wait(lambda: daemon.idle("alice"))

        reply = asyncio.Event()
        sent = await daemon.call("send", to="alice", body="a long job")
        api.script(text("done, once", when=woke_on(sent["id"]), until=reply))
        with anyio.fail_after(60):
            await api.wait_for(woke_on(sent["id"]))  # the model is at work

        await daemon.kill()
        await daemon.start()
        reply.set()  # the turn ends while its harness is reconnecting to the new daemon

        async def acked() -> bool:
            rows = await daemon.call("messages", agent="alice")
            return any(row["id"] == sent["id"] and row["acked_at"] for row in rows)

        await daemon.wait(acked)
        await daemon.wait(lambda: daemon.idle("alice"))
        runs = [r for r in api.main_requests if woke_on(sent["id"])(r)]
        assert len(runs) == 1, [r.last_user_text[:80] for r in runs]
        async with await open_history(short_dir / "state" / "agents" / "alice" / "state") as h:
            turns = [t for t in await h.turns() if t.wake_message_id == sent["id"]]
        assert [t.status for t in turns] == ["ok"]
        log = (short_dir / "state" / "agents" / "alice" / "harness.log").read_text()
        assert "Traceback" not in log, log[-3000:]
