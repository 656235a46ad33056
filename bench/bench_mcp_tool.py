"""Cost of one hive tool call along claude's path, minus claude.

mcp stdio client -> `python -m harness.mcp_server` (a subprocess, as claude runs it)
-> the agent's unix socket -> an in-process echo server standing in for the broker.
Prints p50/p99 of the tool call, of the bare socket round trip it contains, and the
server's start-up time (paid once per claude turn).

    python bench/bench_mcp_tool.py [calls]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.protocol import connect_client, decode_request, encode_result, read_line  # noqa: E402


async def echo(stream: SocketStream) -> None:
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        while (line := await read_line(reader)) is not None:
            request = decode_request(line)
            await stream.send(encode_result(request.id, {"id": 1, **request.args}))


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<34} n={len(ms):<5} p50={p50:.3f} ms  p99={p99:.3f} ms  max={ms[-1]:.3f} ms")


async def main(calls: int) -> None:
    tmp = tempfile.mkdtemp(dir="/tmp", prefix="hb")
    path = os.path.join(tmp, "a.sock")
    async with await anyio.create_unix_listener(path) as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)

        socket_rtt = []
        async with await connect_client(path) as client:
            for _ in range(calls):
                t0 = time.perf_counter()
                await client.call("send", to="bob", body="hi")
                socket_rtt.append(time.perf_counter() - t0)

        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "harness.mcp_server"],
            env={"HIVE_AGENT": "alice", "HIVE_SOCKET": path, "PYTHONPATH": str(REPO)},
            cwd=str(REPO),
        )
        t0 = time.perf_counter()
        async with Client(params) as mcp:
            startup = time.perf_counter() - t0
            for _ in range(20):  # warm up: first call opens the socket connection
                await mcp.call_tool("send", {"to": "bob", "body": "hi"})
            tool_rtt = []
            for _ in range(calls):
                t0 = time.perf_counter()
                result = await mcp.call_tool("send", {"to": "bob", "body": "hi"})
                tool_rtt.append(time.perf_counter() - t0)
                assert not result.is_error
        tg.cancel_scope.cancel()
    os.unlink(path)
    os.rmdir(tmp)

    print(f"mcp server start-up (spawn + initialize): {startup * 1000:.0f} ms")
    report("socket round trip (protocol.Client)", socket_rtt)
    report("tool call send (stdio MCP -> socket)", tool_rtt)


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 500)
