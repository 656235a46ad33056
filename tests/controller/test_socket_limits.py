"""Connection caps and idle timeouts on host.sock and the agent sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.hive import Hive
from controller.protocol import MAX_LINE, ProtocolError, connect_client
from tests.helpers import connect_harness, hive_settings, running_hive, wait_for

pytestmark = pytest.mark.anyio


async def read_answer(stream: SocketStream) -> dict[str, Any] | None:
    """The next line from the server as JSON, or None at EOF."""
    reader = BufferedByteReceiveStream(stream)
    try:
        answer: dict[str, Any] = json.loads(await reader.receive_until(b"\n", MAX_LINE))
    except (anyio.IncompleteRead, anyio.EndOfStream):
        return None
    return answer


async def closed(stream: SocketStream) -> bool:
    try:
        return await stream.receive() == b""
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return True


async def manager_running(hive: Hive) -> None:
    """Once the manager runs, its harness key stays (each start mints a new one)."""

    async def up() -> bool:
        return (await hive.runtime.observe("hm1nd")).state.value == "running"

    await wait_for(up)
    await hive.agent_queue.wait_idle()


async def test_a_connection_over_the_cap_is_told_why_and_closed(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir, host_connections=3)) as hive:
        held = [await anyio.connect_unix(hive.layout.host_socket) for _ in range(3)]
        try:
            over = await anyio.connect_unix(hive.layout.host_socket)
            async with over:
                refusal = await read_answer(over)
                assert refusal is not None
                assert refusal["error"]["code"] == "too_many_connections"
                assert "3 connections" in refusal["error"]["message"]
                assert await closed(over)
            # The ones within the cap are served.
            await held[0].send(b'{"id": 1, "cmd": "status"}\n')
            answer = await read_answer(held[0])
            assert answer is not None and answer["ok"]
        finally:
            for stream in held[1:]:
                await stream.aclose()

        async def served_again() -> bool:
            client = await connect_client(hive.layout.host_socket)
            async with client:
                try:
                    return bool(await client.call("status"))
                except ProtocolError:  # the server has not seen the others close yet
                    return False

        assert await wait_for(served_again)
        await held[0].aclose()


async def test_each_agent_has_its_own_cap_and_the_operator_is_not_counted(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir, agent_connections=2)) as hive:
        manager = hive.layout.socket("hm1nd")
        held = [await anyio.connect_unix(manager) for _ in range(2)]
        try:
            over = await anyio.connect_unix(manager)
            async with over:
                refusal = await read_answer(over)
            assert refusal is not None and refusal["error"]["code"] == "too_many_connections"
            assert "agent hm1nd" in refusal["error"]["message"]
            client = await connect_client(hive.layout.host_socket)
            async with client:
                assert (await client.call("status"))["agents"] == 1
        finally:
            for stream in held:
                await stream.aclose()


async def test_an_idle_connection_is_told_and_closed(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir, idle_timeout=0.05)) as hive:
        stream = await anyio.connect_unix(hive.layout.host_socket)
        async with stream:
            with anyio.fail_after(5):
                notice = await read_answer(stream)
                assert notice is not None
                assert (notice["id"], notice["error"]["code"]) == (None, "idle_timeout")
                assert await closed(stream)


async def test_long_polls_streams_and_leases_are_not_idle(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir, idle_timeout=0.05)) as hive:
        # A recv waiting longer than the idle timeout gets its answer.
        agent = await connect_client(hive.layout.socket("hm1nd"))
        async with agent:
            assert await agent.call("recv", wait_seconds=0.3) is None
        # A watch streams on past the idle timeout.
        watcher = await connect_client(hive.layout.host_socket)
        async with watcher:
            events = watcher.stream("watch")
            assert (await anext(events))["type"] == "hello"
            operator = await connect_client(hive.layout.host_socket)
            async with operator:
                await anyio.sleep(0.2)
                await operator.call("send", to="hm1nd", body="still there?")
            assert (await anext(events))["type"] == "message.sent"
            await events.aclose()
        # A harness holding a leased message (a turn in progress) keeps its connection:
        # closing it would hand the message out again (and the ack would then fail).
        await manager_running(hive)
        harness = await connect_harness(hive, "hm1nd")
        async with harness:
            leased = await harness.call("recv", lease=True)
            assert leased["body"] == "still there?"
            await anyio.sleep(0.3)
            assert await harness.call("ack", id=leased["id"]) == {}


async def test_a_client_sends_again_on_a_new_connection_after_an_idle_close(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir, idle_timeout=0.05)) as hive:
        client = await connect_client(hive.layout.host_socket)
        async with client:
            await client.call("send", to="hm1nd", body="one")
            await anyio.sleep(0.2)  # past the idle timeout: the server closed it
            await client.call("send", to="hm1nd", body="two")
            bodies = [m["body"] for m in await client.call("messages")]
        assert bodies == ["two", "one"]  # each sent once


async def test_a_harness_connection_is_the_harness_again_after_an_idle_close(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir, idle_timeout=0.05)) as hive:
        await manager_running(hive)
        harness = await connect_harness(hive, "hm1nd")
        async with harness:
            await anyio.sleep(0.2)  # past the idle timeout: the server closed it
            # The client reconnects and shows the key again before the request.
            assert await harness.call("turn_state", state="idle") == {}
        assert hive.turns["hm1nd"]["state"] == "idle"
