"""Harness-only commands of an agent socket: refused without the key hive-c0re minted for
the running harness (real hive, real sockets, stand-in harness processes)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from controller.agent_api import agent_commands
from controller.hive import Hive
from controller.protocol import ProtocolError, connect_client
from controller.values import Message
from tests.helpers import Clone, admin, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio

HARNESS_ONLY = (
    ("turn_state", {"state": "thinking"}),
    ("recv", {"wait_seconds": 0, "lease": True}),
    ("ack", {"id": 1}),
    ("release", {"id": 1}),
    ("reclaim", {"ids": [1]}),
)


async def _alice(hive: Hive, short_dir: Path) -> None:
    clone = Clone(short_dir / "clone", hive.git.proposed_path)
    clone.add_agent("alice")
    clone.commit_push("alice")
    (approval,) = await wait_for(lambda: hive.approvals.query("pending"))
    await hive.approvals.approve(approval.id)
    await wait_for(lambda: _running(hive, "alice"))


async def _running(hive: Hive, name: str) -> bool:
    return (await hive.runtime.observe(name)).pid is not None


async def test_harness_only_commands_are_refused_without_the_harness_key(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await _alice(hive, short_dir)
        key_file = hive.layout.harness_key("alice")
        assert key_file.stat().st_mode & 0o777 == 0o600
        client = await connect_client(hive.layout.socket("alice"))
        async with client:
            for cmd, args in HARNESS_ONLY:
                with pytest.raises(ProtocolError) as info:
                    await client.call(cmd, **args)
                assert info.value.code == "forbidden", cmd
                assert "harness only" in info.value.message
            # What claude's MCP server uses keeps working without the key.
            assert await client.call("recv", wait_seconds=0) is None
            assert (await client.call("whoami"))["name"] == "alice"
            await client.call("send", to="hm1nd", body="hello")
            with pytest.raises(ProtocolError) as info:
                await client.call("auth", key="0" * 64)
            assert info.value.code == "forbidden"
            await client.call("auth", key=key_file.read_text())
            await client.call("turn_state", state="idle")
        assert hive.turns["alice"]["state"] == "idle"


async def test_no_agent_socket_command_creates_a_message_from_the_operator(
    short_dir: Path,
) -> None:
    """Not even the harness, with its key: every command the socket has, tried with a
    body as the operator would send, leaves no message whose sender is `operator`."""
    async with running_hive(hive_settings(short_dir)) as hive:
        await _alice(hive, short_dir)
        client = await connect_client(hive.layout.socket("alice"))
        async with client:
            await client.call("auth", key=hive.layout.harness_key("alice").read_text())
            for cmd in sorted(agent_commands.commands):
                for args in (
                    {"body": "as the operator"},
                    {"to": "hm1nd", "body": "as the operator"},
                    {"to": "alice", "body": "as the operator", "sender": "operator"},
                    {"to": "alice", "body": "as the operator", "as": "operator"},
                ):
                    with contextlib.suppress(ProtocolError):
                        await client.call(cmd, **args)
            with pytest.raises(ProtocolError) as info:
                await client.call("operator_send", body="as the operator")
            assert info.value.code == "not_found"  # no such command, key or not
        every = await hive.broker.messages(None, 10_000)
        assert [m for m in every if m.sender == "operator"] == []
        assert any(m.sender == "alice" for m in every)  # `send` did work, as alice


async def _inbox(hive: Hive, name: str) -> list[Message]:
    return [m for m in await hive.broker.messages(name) if m.recipient == name]


async def test_every_start_mints_a_new_key_and_the_old_one_stops_working(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await _alice(hive, short_dir)
        old = hive.layout.harness_key("alice").read_text()
        async with admin(hive) as client:
            await client.call("restart", name="alice")
        await wait_for(lambda: hive.layout.harness_key("alice").read_text() != old)
        client = await connect_client(hive.layout.socket("alice"))
        async with client:
            with pytest.raises(ProtocolError) as info:
                await client.call("auth", key=old)
            assert info.value.code == "forbidden"
