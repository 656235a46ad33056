"""Bad input is `invalid` (never `internal`), ids are checked, every answer is strict JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.protocol import MAX_LINE
from tests.helpers import hive_settings, running_hive

pytestmark = pytest.mark.anyio


def strict_json(line: bytes) -> Any:
    """Parse an answer as a strict JSON parser would: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"answer is not strict JSON ({name}): {line[:200]!r}")

    return json.loads(line, parse_constant=refuse)


async def exchange(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    stream = await anyio.connect_unix(path)
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        answers = []
        for line in lines:
            await stream.send(line + b"\n")
            answers.append(strict_json(await reader.receive_until(b"\n", MAX_LINE)))
        return answers


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_bad_ids_are_invalid_and_answered_with_a_null_id(short_dir: Path) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        answers = await exchange(
            hive.layout.host_socket,
            [
                b'{"id": 1e400, "cmd": "status"}',
                b'{"id": NaN, "cmd": "status"}',
                b'{"id": -Infinity, "cmd": "status"}',
                b'{"id": 1.5, "cmd": "status"}',
                b'{"id": 9007199254740992, "cmd": "status"}',
                b'{"id": true, "cmd": "status"}',
                b'{"id": [1], "cmd": "status"}',
                b'{"id": "' + b"x" * 200 + b'", "cmd": "status"}',
                b'{"id": 9007199254740991, "cmd": "status"}',
                b'{"id": "abc", "cmd": "status"}',
                b'{"cmd": "status"}',
            ],
        )
        got = [(a["id"], a.get("error", {}).get("code")) for a in answers]
        assert got == [
            (None, "invalid"),
            (None, "bad_json"),
            (None, "bad_json"),
            (None, "invalid"),
            (None, "invalid"),
            (None, "invalid"),
            (None, "invalid"),
            (None, "invalid"),
            (9007199254740991, None),
            ("abc", None),
            (None, None),
        ]
        assert "'id' must be" in answers[0]["error"]["message"]
        assert "NaN is not JSON" in answers[1]["error"]["message"]
        assert "'id' must be" in answers[3]["error"]["message"]


async def test_huge_numbers_deep_nesting_and_surrogates_are_invalid_not_internal(
    short_dir: Path,
) -> None:
    async with running_hive(hive_settings(short_dir)) as hive:
        host = await exchange(
            hive.layout.host_socket,
            [
                b'{"id": 1, "cmd": "approve", "args": {"id": 1e400}}',
                b'{"id": 2, "cmd": "approve", "args": {"id": 1' + b"0" * 30 + b"}}",
                b'{"id": 3, "cmd": "approve", "args": {"id": 1' + b"0" * 5000 + b"}}",
                b'{"id": 4, "cmd": "approve", "args": {"id": 9223372036854775808}}',
                b'{"id": 5, "cmd": "approve", "args": {"id": 9223372036854775807}}',
                b'{"id": 6, "cmd": "send", "args": {"to": "hm1nd", "body": "\\ud800"}}',
                b'{"id": 7, "cmd": "send", "args": {"to": "hm1nd", "\\udc80": "x"}}',
                b'{"id": 8, "cmd": "status", "args": {"x": ' + deep(40) + b"}}",
                b'{"id": 9, "cmd": "status", "args": {"x": ' + deep(100_000) + b"}}",
                b'{"id": 10, "cmd": "messages", "args": {"limit": -1e308}}',
                b'{"id": 11, "cmd": "send", "args": {"to": "hm1nd", "body": "\\ud83d\\ude00"}}',
                b'{"id": 12, "cmd": "status"}',
            ],
        )
        codes = [(a["id"], a.get("error", {}).get("code")) for a in host]
        assert codes == [
            (1, "invalid"),
            (2, "invalid"),
            (None, "invalid"),  # Python's JSON refuses 5,000 digits before we see the id
            (4, "invalid"),
            (5, "not_found"),
            (6, "invalid"),
            (7, "invalid"),
            (8, "invalid"),
            (None, "invalid"),
            (10, "invalid"),
            (11, None),
            (12, None),
        ], host
        assert "out of range" in host[2]["error"]["message"]
        assert "nested deeper than 32" in host[7]["error"]["message"]
        assert "lone surrogate" in host[5]["error"]["message"]
        agent = await exchange(
            hive.layout.socket("hm1nd"),
            [
                b'{"id": 1, "cmd": "turn_state", "args": {"state": "idle", "last_turn": '
                + deep(50)
                + b"}}",
                b'{"id": 2, "cmd": "recv", "args": {"wait_seconds": 1e400}}',
                b'{"id": 3, "cmd": "ask_operator", "args": {"question": "q", "ttl_seconds": '
                + b"9" * 18
                + b"}}",
                b'{"id": 4, "cmd": "ack", "args": {"id": 99999999999999999999}}',
                b'{"id": 5, "cmd": "recv", "args": {"wait_seconds": 0}}',
                b'{"id": 6, "cmd": "request_spawn", "args": '
                b'{"name": "zed", "description": "a\\u0000b"}}',
            ],
        )
        codes = [(a["id"], a.get("error", {}).get("code")) for a in agent]
        assert codes == [
            (1, "invalid"),
            (2, "invalid"),
            (3, "invalid"),
            (4, "invalid"),
            (5, None),
            (6, "invalid"),  # a NUL cannot go into a git commit message
        ], agent
        # The emoji (a valid surrogate pair) arrived whole.
        assert agent[4]["result"]["body"] == "\U0001f600"
