"""The stdio MCP server, driven by the mcp library's own client over a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from harness.claude import MANAGER_TOOLS, TOOLS
from harness.mcp_server import create_server
from tests.fakes.agent_socket import Call, open_agent_socket
from tests.harness.conftest import MCP_COMMAND, REPO

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def stdio_mcp(agent: str, socket_path: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=MCP_COMMAND[0],
        args=list(MCP_COMMAND[1:]),
        env={"HIVE_AGENT": agent, "HIVE_SOCKET": socket_path, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
    )
    async with Client(params) as client:
        yield client


def _text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


def _json(result: CallToolResult) -> Any:
    assert not result.is_error, _text(result)
    return json.loads(_text(result))


@pytest.mark.anyio
async def test_send_and_recv_are_forwarded_over_one_connection() -> None:
    async with open_agent_socket("alice") as sock, stdio_mcp("alice", sock.path) as client:
        sock.inbox.append({"id": 9, "sender": "bob", "recipient": "alice", "body": "yo"})
        assert _json(await client.call_tool("send", {"to": "bob", "body": "hi"})) == {"id": 1}
        assert _json(await client.call_tool("recv", {"wait_seconds": 0.5}))["body"] == "yo"
        assert _json(await client.call_tool("recv", {})) is None
    assert sock.calls == [
        Call("send", {"to": "bob", "body": "hi"}),
        Call("recv", {"wait_seconds": 0.5, "lease": False}),
        Call("recv", {"wait_seconds": 30, "lease": False}),
    ]


@pytest.mark.anyio
async def test_send_passes_an_idempotency_key_on_when_given() -> None:
    async with open_agent_socket("alice") as sock, stdio_mcp("alice", sock.path) as client:
        keyed = {"to": "bob", "body": "hi", "idempotency_key": "turn-7-1"}
        assert _json(await client.call_tool("send", keyed)) == {"id": 1}
        too_long = await client.call_tool("send", {**keyed, "idempotency_key": "k" * 129})
        assert too_long.is_error
    assert sock.calls == [Call("send", keyed)]


@pytest.mark.anyio
async def test_only_the_manager_is_offered_manager_tools() -> None:
    async with open_agent_socket("alice") as sock:
        async with stdio_mcp("alice", sock.path) as client:
            agent_tools = {t.name for t in (await client.list_tools()).tools}
        async with stdio_mcp("hm1nd", sock.path) as client:
            manager_tools = {t.name for t in (await client.list_tools()).tools}
    assert agent_tools == set(TOOLS)
    assert manager_tools == set(TOOLS) | set(MANAGER_TOOLS)


@pytest.mark.anyio
async def test_protocol_errors_become_tool_errors_with_the_message() -> None:
    # A manager server on a plain agent's socket: the controller, not the tool list, decides.
    async with open_agent_socket("alice") as sock, stdio_mcp("hm1nd", sock.path) as client:
        result = await client.call_tool("kill", {"name": "bob"})
        assert result.is_error
        assert "forbidden" in _text(result) and "manager only" in _text(result)
        sock.fail["send"] = ("unknown_agent", "no agent named 'zed'")
        result = await client.call_tool("send", {"to": "zed", "body": "x"})
        assert result.is_error and "no agent named 'zed'" in _text(result)


@pytest.mark.anyio
async def test_arguments_are_validated_before_reaching_the_socket() -> None:
    async with open_agent_socket("alice") as sock, stdio_mcp("alice", sock.path) as client:
        result = await client.call_tool("recv", {"wait_seconds": 500})
        assert result.is_error
    assert sock.calls == []


@pytest.mark.anyio
async def test_an_unreachable_socket_is_a_tool_error() -> None:
    server, link = create_server("alice", "/tmp/hive-no-such-dir/a.sock")
    async with Client(server) as client:
        result = await client.call_tool("send", {"to": "bob", "body": "hi"})
    await link.aclose()
    assert result.is_error and "cannot connect" in _text(result)


@pytest.mark.anyio
async def test_manager_tools_forward_their_arguments() -> None:
    async with open_agent_socket("hm1nd", manager=True) as sock:
        server, link = create_server("hm1nd", sock.path)
        async with Client(server) as client:
            await client.call_tool(
                "ask_operator",
                {"question": "ship it?", "options": ["yes", "no"], "ttl_seconds": 60},
            )
            await client.call_tool("request_spawn", {"name": "carol", "description": "tester"})
            await client.call_tool("request_apply_commit", {"sha": "abc123"})
            await client.call_tool("restart", {"name": "carol"})
            assert _json(await client.call_tool("list_agents", {})) == []
        await link.aclose()
    assert sock.calls == [
        Call(
            "ask_operator",
            {"question": "ship it?", "multi": False, "options": ["yes", "no"], "ttl_seconds": 60},
        ),
        Call("request_spawn", {"name": "carol", "description": "tester"}),
        Call("request_apply_commit", {"sha": "abc123", "note": ""}),
        Call("restart", {"name": "carol"}),
        Call("list_agents", {}),
    ]


def test_main_refuses_to_start_without_its_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.mcp_server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "HIVE_AGENT and HIVE_SOCKET" in proc.stderr
