"""The broker's quotas, idempotent sends and paged lists, over real sockets and sqlite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.hive import Hive
from controller.protocol import MAX_LINE, ProtocolError, connect_client
from tests.controller.test_broker import with_agents
from tests.helpers import admin, connect_harness, hive_settings, running_hive

pytestmark = pytest.mark.anyio


async def raw_answer(path: Path, request: dict[str, Any]) -> bytes:
    """The answer line, as bytes (to measure it)."""
    stream = await anyio.connect_unix(path)
    async with stream:
        await stream.send(json.dumps(request).encode() + b"\n")
        return await BufferedByteReceiveStream(stream).receive_until(b"\n", 8 * MAX_LINE)


async def test_a_body_over_the_limit_as_sent_is_too_large(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive, admin(hive) as op:
        with pytest.raises(ProtocolError, match="the limit is 262144 bytes") as big:
            await op.call("send", to="hm1nd", body="x" * 262_145)
        assert big.value.code == "too_large"
        # 100,000 NULs are 600 kB as JSON: over the limit, though 100 kB as UTF-8.
        with pytest.raises(ProtocolError, match="600000 bytes") as escaped:
            await op.call("send", to="hm1nd", body="\0" * 100_000)
        assert escaped.value.code == "too_large"
        assert (await op.call("send", to="hm1nd", body="x" * 262_144))["id"] == 1
        assert len(await op.call("messages")) == 1


async def test_a_full_inbox_refuses_senders_until_its_agent_reads(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir, inbox_max_messages=3)) as hive:
        await with_agents(hive, short_dir, "alice")
        async with admin(hive) as op:
            for n in range(3):
                await op.call("send", to="alice", body=f"m{n}")
            with pytest.raises(ProtocolError, match="holds 3 unread messages") as full:
                await op.call("send", to="alice", body="one too many")
            assert full.value.code == "quota"
            assert "wait until alice has read some" in full.value.message
            alice = await connect_harness(hive, "alice")
            async with alice:
                leased = await alice.call("recv", lease=True)
                # Leased is not read yet: still held against the quota.
                with pytest.raises(ProtocolError, match="holds 3 unread"):
                    await op.call("send", to="alice", body="still too many")
                await alice.call("ack", id=leased["id"])
                assert await op.call("send", to="alice", body="room again")
                # The operator, who never acknowledges, is not held to an inbox quota.
                for n in range(5):
                    await alice.call("send", to="operator", body=f"report {n}")
        stored = await hive.broker.messages(limit=100)
        assert [m.body for m in stored].count("one too many") == 0
        assert len(stored) == 9


async def test_an_inbox_holds_at_most_its_bytes(short_dir: Path) -> None:
    settings = hive_settings(short_dir, inbox_max_bytes=300_000)
    async with running_hive(settings) as hive, admin(hive) as op:
        await op.call("send", to="hm1nd", body="a" * 200_000)
        with pytest.raises(ProtocolError, match=r"would pass the limit of 0\.3 MiB") as full:
            await op.call("send", to="hm1nd", body="b" * 200_000)
        assert full.value.code == "quota"
        assert await op.call("send", to="hm1nd", body="c" * 90_000)


async def test_an_agent_sending_too_fast_is_told_how_long_to_wait(short_dir: Path) -> None:
    settings = hive_settings(short_dir, message_max_bytes=1000, send_max_bytes_per_minute=1600)
    async with running_hive(settings) as hive:
        manager = await connect_client(hive.layout.socket("hm1nd"))
        async with manager:
            await manager.call("send", to="operator", body="x" * 1000)
            with pytest.raises(ProtocolError, match=r"wait \d+\.\d s and send again") as fast:
                await manager.call("send", to="operator", body="x" * 1000)
            assert fast.value.code == "quota"
        # The operator is not rate-limited.
        async with admin(hive) as op:
            for _ in range(3):
                await op.call("send", to="hm1nd", body="y" * 1000)


async def test_a_retried_send_with_its_key_stores_one_message(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        # A client that sent and lost the connection before the answer: unknown outcome.
        args = {"to": "hm1nd", "body": "once", "idempotency_key": "op-1"}
        request = {"id": 1, "cmd": "send", "args": args}
        stream = await anyio.connect_unix(hive.layout.host_socket)
        async with stream:
            await stream.send(json.dumps(request).encode() + b"\n")
        async with admin(hive) as op:
            first = await op.call("send", to="hm1nd", body="once", idempotency_key="op-1")
            again = await op.call("send", to="hm1nd", body="once", idempotency_key="op-1")
            assert first == again
            with pytest.raises(ProtocolError, match="a new message needs a new key") as reused:
                await op.call("send", to="hm1nd", body="other", idempotency_key="op-1")
            assert reused.value.code == "conflict"
            with pytest.raises(ProtocolError, match="at most 128 characters"):
                await op.call("send", to="hm1nd", body="x", idempotency_key="k" * 129)
        # Keys belong to their sender: the manager's "op-1" is its own message.
        manager = await connect_client(hive.layout.socket("hm1nd"))
        async with manager:
            own = await manager.call("send", to="operator", body="once", idempotency_key="op-1")
            assert own != first
            assert own == await manager.call(
                "send", to="operator", body="once", idempotency_key="op-1"
            )
        bodies = [m.body for m in await hive.broker.messages()]
        assert bodies == ["once", "once"]


async def fill(hive: Hive, count: int, size: int) -> None:
    async with admin(hive) as op:
        for n in range(count):
            await op.call("send", to="hm1nd", body=f"{n:04}" + "x" * size)


async def test_lists_are_pages_a_client_can_read_and_page_on(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        await fill(hive, 10, 200_000)
        async with admin(hive) as op:
            with pytest.raises(ProtocolError, match="less than or equal to 1000"):
                await op.call("messages", limit=10_000)
            line = await raw_answer(hive.layout.host_socket, {"id": 1, "cmd": "messages"})
            assert len(line) <= 512 * 1024 + 1024
            seen: list[int] = []
            page = await op.call("messages")
            while page:
                assert 1 <= len(page) < 10
                seen += [m["id"] for m in page]
                page = await op.call("messages", before_id=page[-1]["id"])
            assert seen == list(range(10, 0, -1))
        manager = await connect_client(hive.layout.socket("hm1nd"))
        async with manager:
            unread: list[int] = []
            page = await manager.call("inbox")
            while page:
                unread += [m["id"] for m in page]
                page = await manager.call("inbox", after_id=page[-1]["id"])
            assert unread == list(range(1, 11))
            assert [m["id"] for m in await manager.call("inbox", limit=2)] == [1, 2]


async def test_events_approvals_and_questions_page_back_by_id(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        manager = await connect_client(hive.layout.socket("hm1nd"))
        async with manager, admin(hive) as op:
            asked = [
                (await manager.call("ask_operator", question=f"q{n}"))["id"] for n in (1, 2, 3)
            ]
            first = await op.call("questions", limit=2)
            rest = await op.call("questions", limit=2, after_id=first[-1]["id"])
            assert [q["id"] for q in first + rest] == asked
            newest = await op.call("questions", status=None, limit=1)
            older = await op.call("questions", status=None, before_id=newest[0]["id"])
            assert [q["id"] for q in newest + older] == asked[::-1]
            with anyio.fail_after(5):
                while len(await op.call("events", type="question.")) < 3:
                    await anyio.sleep(0.01)
            top = await op.call("events", type="question.", limit=1)
            below = await op.call("events", type="question.", before_id=top[0]["id"])
            assert [e["question"]["id"] for e in top + below] == asked[::-1]
            assert await op.call("approvals", before_id=1) == []
            with pytest.raises(ProtocolError, match="less than or equal to 1000"):
                await op.call("approvals", limit=5000)
