"""A stand-in for the controller's agent socket: the protocol, recorded, no broker behind.

It answers the agent socket commands the harness side uses (`send` returns an id,
`recv` pops a queued message or returns null, manager commands are refused with
`forbidden` unless `manager=True`), and records every call so tests can assert what the
MCP server forwarded. `fail` maps a command to an error (code, message) to test how
errors surface.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from controller.protocol import (
    ProtocolError,
    decode_request,
    encode_error,
    encode_result,
    read_line,
)
from harness.claude import MANAGER_TOOLS

__all__ = ["AgentSocket", "Call", "open_agent_socket"]

_MANAGER_CMDS = set(MANAGER_TOOLS)


@dataclass(frozen=True)
class Call:
    cmd: str
    args: dict[str, Any]


@dataclass
class AgentSocket:
    path: str
    name: str = "alice"
    manager: bool = False
    calls: list[Call] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def calls_of(self, cmd: str) -> list[Call]:
        return [c for c in self.calls if c.cmd == cmd]

    def answer(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd in self.fail:
            code, message = self.fail[cmd]
            raise ProtocolError(code, message)
        if cmd in _MANAGER_CMDS and not self.manager:
            raise ProtocolError("forbidden", f"{cmd} is for the manager only")
        if cmd == "send":
            return {"id": next(self._ids)}
        if cmd == "recv":
            return self.inbox.pop(0) if self.inbox else None
        if cmd in ("ack", "release", "turn_state"):
            return {}
        if cmd == "reclaim":
            return {"reclaimed": list(args.get("ids", []))}
        if cmd == "whoami":
            role = "manager" if self.manager else "agent"
            return {"name": self.name, "role": role, "model": "", "prompt": "", "allowed_tools": []}
        if cmd == "list_agents":
            return []
        if cmd in ("ask_operator", "request_spawn", "request_apply_commit"):
            return {"id": next(self._ids)}
        if cmd in ("kill", "start", "restart"):
            return {"name": args.get("name"), "state": "running"}
        raise ProtocolError("unknown_cmd", f"unknown command {cmd!r}")

    async def handle(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            while (line := await read_line(reader)) is not None:
                try:
                    request = decode_request(line)
                except ProtocolError as exc:
                    await stream.send(encode_error(exc.request_id, exc.code, exc.message))
                    continue
                self.calls.append(Call(request.cmd, dict(request.args)))
                try:
                    result = self.answer(request.cmd, dict(request.args))
                except ProtocolError as exc:
                    await stream.send(encode_error(request.id, exc.code, exc.message))
                else:
                    await stream.send(encode_result(request.id, result))


@contextlib.asynccontextmanager
async def open_agent_socket(
    name: str = "alice", *, manager: bool = False
) -> AsyncIterator[AgentSocket]:
    """Serve an `AgentSocket` on a unix socket in a short temp dir until the block exits."""
    tmp = tempfile.mkdtemp(dir="/tmp", prefix="hv")
    path = os.path.join(tmp, "a.sock")
    sock = AgentSocket(path, name=name, manager=manager)
    try:
        async with (
            await anyio.create_unix_listener(path) as listener,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, sock.handle)
            yield sock
            # anyio 4.16 trap: cancelling a receive() right after the peer closed logs
            # InvalidStateError; let the handlers see their EOF first.
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(tmp)
