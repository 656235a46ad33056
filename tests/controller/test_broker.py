"""The broker over real agent sockets: wake-ups, leases, redelivery, limits."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from controller.hive import Hive
from controller.protocol import ProtocolError, connect_client
from tests.helpers import (
    Clone,
    admin,
    connect_harness,
    hive_settings,
    running_hive,
    wait_for,
)

pytestmark = pytest.mark.anyio


async def with_agents(hive: Hive, root: Path, *names: str) -> None:
    """Declare agents, held stopped: the test itself speaks on their sockets."""
    clone = Clone(root / "clone", hive.git.proposed_path)
    for name in names:
        clone.add_agent(name, enabled="false")
    clone.commit_push("agents")
    (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
    await hive.approvals.approve(approval.id)
    for name in names:
        await wait_for(hive.layout.socket(name).exists)


async def test_send_wakes_a_waiting_recv_at_once(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice", "bob")
        bob = await connect_client(hive.layout.socket("bob"))
        alice = await connect_client(hive.layout.socket("alice"))
        async with bob, alice:
            got: list[object] = []

            async def receive() -> None:
                got.append(await bob.call("recv", wait_seconds=30))

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await anyio.sleep(0.05)
                started = anyio.current_time()
                await alice.call("send", to="bob", body="ping")
            assert anyio.current_time() - started < 1.0
        message = got[0]
        assert isinstance(message, dict)
        assert (message["sender"], message["body"]) == ("alice", "ping")
        assert message["acked_at"] is not None


async def test_a_leased_message_comes_back_when_its_connection_dies(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice")
        async with admin(hive) as op:
            await op.call("send", to="alice", body="important")
        first = await connect_harness(hive, "alice")
        message = await first.call("recv", wait_seconds=1, lease=True)
        assert message["body"] == "important"
        second = await connect_harness(hive, "alice")
        async with second:
            assert await second.call("recv", wait_seconds=0, lease=True) is None
            got: list[object] = []

            async def receive() -> None:
                got.append(await second.call("recv", wait_seconds=30, lease=True))

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.sleep(0.1)
                await first.aclose()  # the harness died mid-turn
            assert isinstance(got[0], dict) and got[0]["id"] == message["id"]
            await second.call("ack", id=message["id"])
            with pytest.raises(ProtocolError, match="not leased"):
                await second.call("ack", id=message["id"])
        rows = await hive.broker.messages("alice")
        assert rows[0].acked_at is not None


async def test_a_harness_that_reconnects_mid_turn_reclaims_its_lease(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice", "bob")
        async with admin(hive) as op:
            await op.call("send", to="alice", body="a long job")
            other = await op.call("send", to="bob", body="not alice's")
        first = await connect_harness(hive, "alice")
        message = await first.call("recv", wait_seconds=1, lease=True)
        await first.aclose()  # the connection is lost while the turn goes on
        await anyio.sleep(0.05)
        again = await connect_harness(hive, "alice")
        async with again:
            # Nobody is handed the message in the meantime, not even the model's recv.
            assert await again.call("recv", wait_seconds=0) is None
            got = await again.call("reclaim", ids=[message["id"], other["id"], 10**6])
            assert got == {"reclaimed": [message["id"]]}
            await again.call("ack", id=message["id"])
            assert await again.call("recv", wait_seconds=0, lease=True) is None
            assert await again.call("reclaim", ids=[message["id"]]) == {"reclaimed": []}
        (row,) = await hive.broker.messages("alice")
        assert row.acked_at is not None


async def test_a_lease_outlives_a_restart_of_hive_c0re(short_dir: Path) -> None:
    settings = hive_settings(short_dir)
    async with running_hive(settings) as hive:
        await with_agents(hive, short_dir, "alice")
        async with admin(hive) as op:
            kept = await op.call("send", to="alice", body="mid-turn when the daemon died")
            dead = await op.call("send", to="alice", body="its turn died with the daemon")
        harness = await connect_harness(hive, "alice")
        async with harness:
            assert (await harness.call("recv", wait_seconds=1, lease=True))["id"] == kept["id"]
            dying = await connect_harness(hive, "alice")
            async with dying:
                assert (await dying.call("recv", wait_seconds=1, lease=True))["id"] == dead["id"]
    async with running_hive(settings) as hive:
        harness = await connect_harness(hive, "alice")
        async with harness:
            assert await harness.call("recv", wait_seconds=0) is None
            assert await harness.call("reclaim", ids=[kept["id"]]) == {"reclaimed": [kept["id"]]}
            # A leased recv after the reclaim: the orphan nobody took back is a dead turn's.
            again = await harness.call("recv", wait_seconds=1, lease=True)
            assert again["id"] == dead["id"]
            await harness.call("ack", id=kept["id"])
            await harness.call("ack", id=dead["id"])
        assert all(row.acked_at for row in await hive.broker.messages("alice"))


async def test_release_hands_the_message_to_a_waiting_receiver(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice")
        async with admin(hive) as op:
            await op.call("send", to="alice", body="retry me")
        a = await connect_harness(hive, "alice")
        b = await connect_harness(hive, "alice")
        async with a, b:
            message = await a.call("recv", wait_seconds=1, lease=True)
            got: list[object] = []

            async def receive() -> None:
                got.append(await b.call("recv", wait_seconds=30, lease=True))

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.sleep(0.1)
                await a.call("release", id=message["id"])
            assert isinstance(got[0], dict) and got[0]["id"] == message["id"]


async def test_a_client_that_went_away_does_not_swallow_messages(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice")
        gone = await connect_harness(hive, "alice")
        async with anyio.create_task_group() as tg:

            async def wait_and_die() -> None:
                with anyio.move_on_after(0.2):
                    await gone.call("recv", wait_seconds=60, lease=True)

            tg.start_soon(wait_and_die)
        await gone.aclose()
        await anyio.sleep(0.1)
        async with admin(hive) as op:
            await op.call("send", to="alice", body="for the living")
        live = await connect_harness(hive, "alice")
        async with live:
            message = await live.call("recv", wait_seconds=5, lease=True)
        assert message is not None and message["body"] == "for the living"


async def test_limits_and_bad_recipients_are_clear_errors(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await with_agents(hive, short_dir, "alice")
        async with admin(hive) as op:
            with pytest.raises(ProtocolError, match="the limit is 262144"):
                await op.call("send", to="alice", body="x" * 262_145)
            with pytest.raises(ProtocolError, match="invalid agent name"):
                await op.call("send", to="../etc", body="x")
            with pytest.raises(ProtocolError, match="no agent 'ghost'"):
                await op.call("send", to="ghost", body="x")
        alice = await connect_client(hive.layout.socket("alice"))
        async with alice:
            with pytest.raises(ProtocolError, match="less than or equal to 180"):
                await alice.call("recv", wait_seconds=500)
            with pytest.raises(ProtocolError, match="cannot send to itself"):
                await alice.call("send", to="alice", body="x")
        assert await hive.broker.messages() == []
