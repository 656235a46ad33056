"""The fake Messages API itself, over real HTTP (what claude relies on it to do)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.fakes.anthropic import FakeAnthropic, open_fake_anthropic, text, tool_use


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


TOOLS = [{"name": "mcp__hive__send", "input_schema": {"type": "object"}}]


def _request(user: str, *, stream: bool = True, tools: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "system": [{"type": "text", "text": f"agent prompt for {user}"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"hello {user}"}]}],
    }
    if tools:
        body["tools"] = TOOLS
    return body


async def _sse(
    session: aiohttp.ClientSession, fake: FakeAnthropic, body: dict[str, Any]
) -> list[dict[str, Any]]:
    async with session.post(f"{fake.url}/v1/messages?beta=true", json=body) as resp:
        assert resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    events = []
    for chunk in raw.strip().split("\n\n"):
        name, data = chunk.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data.removeprefix("data: "))
        assert event["type"] == name.removeprefix("event: ")
        events.append(event)
    return events


@pytest.mark.anyio
async def test_tool_use_is_streamed_as_anthropic_sse() -> None:
    async with open_fake_anthropic() as fake, aiohttp.ClientSession() as session:
        fake.script(tool_use("mcp__hive__send", {"to": "bob", "body": "hi"}, say="ok"))
        events = await _sse(session, fake, _request("alice"))

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4]["content_block"]["type"] == "tool_use"
    assert events[4]["content_block"]["name"] == "mcp__hive__send"
    assert json.loads(events[5]["delta"]["partial_json"]) == {"to": "bob", "body": "hi"}
    assert events[7]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.anyio
async def test_side_requests_and_probes_do_not_consume_the_script() -> None:
    async with open_fake_anthropic() as fake, aiohttp.ClientSession() as session:
        fake.script(text("scripted"))
        async with session.head(f"{fake.url}/api/hello") as resp:
            assert resp.status == 200
        async with session.post(f"{fake.url}/v1/messages/count_tokens", json={}) as resp:
            assert await resp.json() == {"input_tokens": 10}
        async with session.post(
            f"{fake.url}/v1/messages", json=_request("x", stream=False, tools=False)
        ) as resp:
            side = await resp.json()
        async with session.get(f"{fake.url}/api/unknown") as resp:
            assert resp.status == 404
        assert len(fake.pending) == 1
        async with session.post(
            f"{fake.url}/v1/messages", json=_request("x", stream=False)
        ) as resp:
            main = await resp.json()

    assert side["content"] == [{"type": "text", "text": "ok"}]
    assert main["content"] == [{"type": "text", "text": "scripted"}]
    assert main["stop_reason"] == "end_turn"
    assert [r.path for r in fake.main_requests] == ["/v1/messages"]
    assert len(fake.requests) == 5


@pytest.mark.anyio
async def test_replies_can_be_matched_to_the_agent_that_asks() -> None:
    async with open_fake_anthropic() as fake, aiohttp.ClientSession() as session:
        fake.script(
            text("for bob", when=lambda r: r.mentions("prompt for bob")),
            text("for alice", when=lambda r: "hello alice" in r.last_user_text),
        )
        alice = await _sse(session, fake, _request("alice"))
        bob = await _sse(session, fake, _request("bob"))
        nobody = await _sse(session, fake, _request("carol"))

    assert alice[2]["delta"]["text"] == "for alice"
    assert bob[2]["delta"]["text"] == "for bob"
    assert "nothing scripted" in nobody[2]["delta"]["text"]
