"""host.sock with bad input of every kind: an error answer each, the connection lives on."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.protocol import MAX_LINE
from tests.helpers import hive_settings, running_hive

pytestmark = pytest.mark.anyio


async def exchange(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    stream = await anyio.connect_unix(path)
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        answers = []
        for line in lines:
            await stream.send(line + b"\n")
            answers.append(json.loads(await reader.receive_until(b"\n", MAX_LINE)))
        return answers


async def test_every_kind_of_bad_request_gets_an_error_and_the_connection_survives(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        sock = hive.layout.host_socket
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        answers = await exchange(
            sock,
            [
                b"this is not json",
                b"[1, 2, 3]",
                b'{"id": 1}',
                b'{"id": 2, "cmd": "launch-missiles"}',
                b'{"id": 3, "cmd": "approve"}',
                b'{"id": 4, "cmd": "approve", "args": {"id": "seven"}}',
                b'{"id": 5, "cmd": "approve", "args": {"id": 12345}}',
                b'{"id": 6, "cmd": "deny", "args": {"id": 1, "extra": true}}',
                b'{"id": 7, "cmd": "start", "args": {"name": "../../etc/passwd"}}',
                b'{"id": 8, "cmd": "start", "args": {"name": "ghost"}}',
                b'{"id": 9, "cmd": "status", "args": []}',
                b'{"id": 10, "cmd": "approvals", "args": {"status": "weird"}}',
                b'{"id": 11, "cmd": "status"}',
            ],
        )
        codes = [(a["id"], a["ok"], a.get("error", {}).get("code")) for a in answers]
        assert codes == [
            (None, False, "bad_json"),
            (None, False, "bad_request"),
            (1, False, "bad_request"),
            (2, False, "not_found"),
            (3, False, "invalid"),
            (4, False, "invalid"),
            (5, False, "not_found"),
            (6, False, "invalid"),
            (7, False, "invalid"),
            (8, False, "not_found"),
            (9, False, "bad_request"),
            (10, False, "invalid"),
            (11, True, None),
        ]
        (weird,) = await exchange(
            sock, [b'{"id": 12, "cmd": "questions", "args": {"status": "weird"}}']
        )
        assert weird["error"]["code"] == "invalid"
        assert "use one of pending, answered" in weird["error"]["message"]
        messages = [a["error"]["message"] for a in answers if not a["ok"]]
        assert "known: " in messages[3]
        assert "id: Field required" in messages[4]
        assert "extra: unknown argument" in messages[7]
        assert "invalid agent name" in messages[8]


async def test_an_oversized_request_is_refused(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        stream = await anyio.connect_unix(hive.layout.host_socket)
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            big = b'{"id": 1, "cmd": "send", "args": {"body": "' + b"x" * (2 * MAX_LINE)
            # The server may close before it has read it all.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(big + b'"}}\n')
            answer = json.loads(await reader.receive_until(b"\n", MAX_LINE))
        # The daemon carries on serving others.
        (ok,) = await exchange(hive.layout.host_socket, [b'{"id": 2, "cmd": "status"}'])
        assert ok["ok"]
        assert answer["error"]["code"] == "too_large"


async def test_the_audit_log_filters_by_known_event_types_only(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        (approvals, kills, unknown, wildcard) = await exchange(
            hive.layout.host_socket,
            [
                b'{"id": 1, "cmd": "events", "args": {"type": "approval"}}',
                b'{"id": 2, "cmd": "events", "args": {"type": "agent.kill"}}',
                b'{"id": 3, "cmd": "events", "args": {"type": "aproval"}}',
                b'{"id": 4, "cmd": "events", "args": {"type": "agent_kill"}}',
            ],
        )
        assert (approvals["ok"], approvals["result"]) == (True, [])
        assert (kills["ok"], kills["result"]) == (True, [])
        assert unknown["error"]["code"] == "invalid"
        assert "no audited event type starts with 'aproval'" in unknown["error"]["message"]
        assert "approval" in unknown["error"]["message"]
        # `_` is no SQL wildcard here: it matches nothing, so it is refused too.
        assert wildcard["error"]["code"] == "invalid"
