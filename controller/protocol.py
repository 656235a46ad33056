"""The JSON-lines socket protocol shared by `host.sock`, the agent sockets and clients.

One request per line: `{"id": any, "cmd": str, "args": {...}}`. One answer per request:
`{"id", "ok": true, "result"}` or `{"id", "ok": false, "error": {"code", "message"}}`.
A streaming command (`watch`) answers with `{"id", "event": {...}}` lines until the client
closes. Lines are capped at `MAX_LINE` bytes so a client cannot make the daemon buffer
without bound; a longer line is refused and the connection closed (its framing is lost).

This module is the one both sides import: the harness uses `Client`, the controller uses
`decode_request` / `encode_*`. Both run their connections on asyncio's transports
(`open_transport_stream`): anyio's own unix-socket stream yields to the loop on every
`send` and `receive` and registers and unregisters the socket with epoll on every read
that waits, which costs ~50 us of CPU per request on each side and ~15% of the
send -> recv wake latency (measured with bench/bench_broker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, is_dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "MAX_LINE",
    "Client",
    "ProtocolError",
    "Request",
    "connect_client",
    "decode_request",
    "encode_error",
    "encode_event",
    "encode_result",
    "jsonable",
    "open_transport_stream",
    "read_line",
]

MAX_LINE = 1024 * 1024

JSON = Any


class ProtocolError(Exception):
    """Raised for an error answer, or for a request that cannot be understood."""

    def __init__(self, code: str, message: str, request_id: JSON = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: JSON
    cmd: str
    args: Mapping[str, JSON]


def decode_request(line: bytes) -> Request:
    """Parse one request line; the `id` is kept even when the rest is bad."""
    try:
        raw = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"request is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "request must be a JSON object")
    rid = raw.get("id")
    cmd = raw.get("cmd")
    args = raw.get("args", {})
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError("bad_request", "'cmd' must be a non-empty string", rid)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "'args' must be a JSON object", rid)
    return Request(id=rid, cmd=cmd, args=args)


def jsonable(value: object) -> JSON:
    """The one encoder of our values (frozen dataclasses, enums, tuples) into JSON types;
    anything else it does not know becomes its `str`."""
    # Imported here: the harness shares this module but sends only plain JSON, and
    # pydantic_core would add ~4 MB and ~80 ms to every harness and MCP server start.
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=str)


def _default(value: object) -> JSON:
    """`json.dumps`'s hook for what it cannot encode itself. A dataclass instance is
    handed over as its fields (json calls back for the values inside): the broker's hot
    path then costs ~1 us per value instead of ~5 us through `jsonable`."""
    if is_dataclass(value) and not isinstance(value, type) and hasattr(value, "__dict__"):
        return vars(value)
    return jsonable(value)


def _dump(obj: Mapping[str, JSON]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=_default).encode() + b"\n"


def encode_result(rid: JSON, result: JSON) -> bytes:
    return _dump({"id": rid, "ok": True, "result": result})


def encode_error(rid: JSON, code: str, message: str) -> bytes:
    return _dump({"id": rid, "ok": False, "error": {"code": code, "message": message}})


def encode_event(rid: JSON, event: JSON) -> bytes:
    return _dump({"id": rid, "event": event})


async def read_line(stream: BufferedByteReceiveStream) -> bytes | None:
    """The next line without its newline, or None at a clean EOF."""
    try:
        return await stream.receive_until(b"\n", MAX_LINE)
    except (anyio.IncompleteRead, anyio.EndOfStream):
        return None


class _TransportStream(ByteStream):
    """A connected unix socket on an asyncio transport, as an anyio byte stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            data = await self._reader.read(max_bytes)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.ClosedResourceError if self._closed else anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._writer.is_closing():
            raise anyio.BrokenResourceError
        self._writer.write(item)
        try:
            await self._writer.drain()  # waits only while the peer is not reading
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        self._writer.write_eof()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        # Flush what the transport still holds, but never wait on a peer that stopped
        # reading: past the grace the connection is cut.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(1.0),
            contextlib.suppress(OSError),
        ):
            await self._writer.wait_closed()
        self._writer.transport.abort()


async def open_transport_stream(stream: ByteStream) -> ByteStream:
    """`stream`'s socket on an asyncio transport; `stream` itself on another backend.

    The transport owns the socket from then on: close the returned stream (closing
    `stream` too is harmless)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio: anyio's stream is its native one
        return stream
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    return _TransportStream(reader, writer)


class Client:
    """A connection to a hive socket; one call at a time (calls are serialised)."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._lock = anyio.Lock()
        self._next = 0

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def call(self, cmd: str, **args: JSON) -> JSON:
        async with self._lock:
            self._next += 1
            rid = self._next
            try:
                await self._stream.send(_dump({"id": rid, "cmd": cmd, "args": args}))
                line = await read_line(self._reader)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise ProtocolError("closed", f"the connection is gone: {exc!r}") from exc
            if line is None:
                raise ProtocolError("closed", "the server closed the connection")
            answer = json.loads(line)
            if answer.get("ok"):
                return answer.get("result")
            err = answer.get("error") or {}
            raise ProtocolError(str(err.get("code", "error")), str(err.get("message", "")))

    async def stream(self, cmd: str, **args: JSON) -> AsyncGenerator[JSON, None]:
        """Send a streaming command and yield each event until the server closes."""
        async with self._lock:
            self._next += 1
            await self._stream.send(_dump({"id": self._next, "cmd": cmd, "args": args}))
            while True:
                line = await read_line(self._reader)
                if line is None:
                    return
                answer = json.loads(line)
                if "event" in answer:
                    yield answer["event"]
                elif answer.get("ok") is False:
                    err = answer.get("error") or {}
                    raise ProtocolError(str(err.get("code")), str(err.get("message")))


async def connect_client(path: str | os.PathLike[str]) -> Client:
    try:
        stream = await anyio.connect_unix(os.fspath(path))
    except OSError as exc:
        raise ProtocolError(
            "unreachable", f"cannot connect to {os.fspath(path)}: {exc.strerror or exc}"
        ) from exc
    try:
        return Client(await open_transport_stream(stream))
    except BaseException:
        await stream.aclose()
        raise
