"""The JSON-lines socket protocol shared by `host.sock`, the agent sockets and clients.

One request per line: `{"id": any, "cmd": str, "args": {...}}`. One answer per request:
`{"id", "ok": true, "result"}` or `{"id", "ok": false, "error": {"code", "message"}}`.
A streaming command (`watch`) answers with `{"id", "event": {...}}` lines until the client
closes. Lines are capped at `MAX_LINE` bytes so a client cannot make the daemon buffer
without bound; a longer line is refused and the connection closed (its framing is lost).

Requests are strict JSON and checked before any command sees them, so that no input
reaches a conversion that could fail on it (sqlite, `timedelta`, UTF-8): `NaN` and
`Infinity` are not JSON (`bad_json`); numbers must be finite and integers within
+-2^63; text must be Unicode (no lone surrogates); nesting is at most `MAX_DEPTH` deep
(each `invalid`). An `id` is null (or absent), a string of at most `MAX_ID_LENGTH`
characters or an integer within +-(2^53 - 1), which every JSON parser keeps exact;
any other id is `invalid` and answered with `id: null`. Answers are strict JSON too
(`allow_nan=False`, ASCII), whatever they carry.

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
import math
import os
import re
import socket
import ssl
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, is_dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "MAX_DEPTH",
    "MAX_ID",
    "MAX_ID_LENGTH",
    "MAX_KEY",
    "MAX_LINE",
    "MAX_PAGE",
    "Client",
    "ProtocolError",
    "Request",
    "connect_client",
    "decode_request",
    "encode_error",
    "encode_event",
    "encode_result",
    "encoded_size",
    "jsonable",
    "open_tls",
    "open_transport_stream",
    "parse_tls_address",
    "read_line",
]

MAX_LINE = 1024 * 1024
MAX_DEPTH = 32
MAX_ID = 2**53 - 1
MAX_ID_LENGTH = 128
MAX_KEY = 128  # an idempotency key's length (`send`)
MAX_PAGE = 1000  # the most rows a list answer holds (`controller/paging.py`)
_MAX_INT = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a line needs to hold for the parsed value to need a look: an escape (the only way
# to a lone surrogate), an exponent or 19 digits (the only ways out of range), and more
# brackets than MAX_DEPTH (the only way too deep).
_NUMBER_TO_CHECK = re.compile(rb"\d[eE]|\d{19}")

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


class _NotJSON(Exception):
    """Raised inside the JSON parser for `NaN` and `Infinity`, which are not JSON."""


def _no_constant(name: str) -> JSON:
    raise _NotJSON(f"{name} is not JSON; numbers must be finite")


# One decoder for every request: `json.loads` with a hook builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _text_problem(text: str) -> str | None:
    if text.isascii() or _SURROGATE.search(text) is None:
        return None
    return "text must be valid Unicode (a lone surrogate is not)"


def _number_problem(item: int | float) -> str | None:
    if type(item) is float:
        return None if math.isfinite(item) else "a number is out of range"
    if type(item) is int and not -_MAX_INT <= item <= _MAX_INT:
        return "an integer is out of range (+-2^63)"
    return None


def _shape_problem(value: JSON) -> str | None:
    """What is wrong with a parsed request (depth, text, numbers), or None. Iterative,
    so it cannot itself run out of stack; on the path of every request, so plain."""
    stack: list[tuple[JSON, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            problem = _text_problem(item)
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = item.values() if kind is dict else item
            if kind is dict:
                for key in item:
                    problem = _text_problem(key)
                    if problem is not None:
                        return problem
            for child in children:
                stack.append((child, depth + 1))
            continue
        elif kind is int or kind is float:
            problem = _number_problem(item)
        else:
            continue
        if problem is not None:
            return problem
    return None


def _worth_a_look(line: bytes) -> bool:
    """Whether the parsed line may break a rule of `_shape_problem` (most lines cannot,
    and the walk would cost more than the parse)."""
    return (
        b"\\u" in line
        or line.count(b"[") + line.count(b"{") > MAX_DEPTH
        or _NUMBER_TO_CHECK.search(line) is not None
    )


def _id_problem(rid: JSON) -> str | None:
    if rid is None:
        return None
    if isinstance(rid, str):
        return None if len(rid) <= MAX_ID_LENGTH else f"'id' is longer than {MAX_ID_LENGTH}"
    if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= MAX_ID:
        return None
    return "'id' must be null, a string or an integer within +-(2^53 - 1)"


def decode_request(line: bytes) -> Request:
    """Parse one request line; the `id` is kept even when the rest is bad (if it is a
    valid id)."""
    try:
        raw = _DECODER.decode(line.decode("utf-8"))
    except _NotJSON as exc:
        raise ProtocolError("bad_json", str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"request is not valid JSON: {exc}") from exc
    except ValueError:  # Python's own limit: an integer of more than 4,300 digits
        raise ProtocolError("invalid", "bad request: an integer is out of range") from None
    except RecursionError:
        raise ProtocolError("invalid", f"request nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "request must be a JSON object")
    rid = raw.get("id")
    problem = _id_problem(rid)
    if problem is not None:
        raise ProtocolError("invalid", problem)
    problem = _shape_problem(raw) if _worth_a_look(line) else None
    if problem is not None:
        raise ProtocolError("invalid", f"bad request: {problem}", rid)
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


def encoded_size(value: object) -> int:
    """Bytes of `value` inside an answer line."""
    return len(json.dumps(value, separators=(",", ":"), default=_default))


def _dump(obj: Mapping[str, JSON]) -> bytes:
    """One line of strict JSON; ASCII (`ensure_ascii`), so it always encodes."""
    text = json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=False)
    return text.encode() + b"\n"


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


class _Unsent(Exception):
    """Raised when the server had closed the connection before reading the request."""


class Client:
    """A connection to a hive socket; one call at a time (calls are serialised).

    A client made by `connect_client` knows its socket's path: when the server had
    closed the connection for idleness before the request (the `idle_timeout` line, or
    a broken pipe on sending), the request was never carried out, and it is sent once
    more on a fresh connection, after the `hello` calls that make a connection what it
    was (the harness's `auth`)."""

    def __init__(
        self,
        stream: ByteStream,
        path: str | None = None,
        hello: Sequence[tuple[str, Mapping[str, JSON]]] = (),
    ) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._path = path
        self._hello = tuple(hello)
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
            try:
                return await self._exchange(cmd, args)
            except _Unsent as exc:
                if self._path is None:
                    raise ProtocolError("closed", f"the connection is gone: {exc}") from exc
                await self._reconnect()
                try:
                    return await self._exchange(cmd, args)
                except _Unsent as again:
                    raise ProtocolError("closed", f"the connection is gone: {again}") from again

    async def _exchange(self, cmd: str, args: Mapping[str, JSON]) -> JSON:
        self._next += 1
        rid = self._next
        try:
            await self._stream.send(_dump({"id": rid, "cmd": cmd, "args": args}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _Unsent(repr(exc)) from exc
        try:
            line = await read_line(self._reader)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ProtocolError("closed", f"the connection is gone: {exc!r}") from exc
        if line is None:
            raise ProtocolError("closed", "the server closed the connection")
        answer = json.loads(line)
        if answer.get("ok"):
            return answer.get("result")
        err = answer.get("error") or {}
        code, message = str(err.get("code", "error")), str(err.get("message", ""))
        if code == "idle_timeout" and answer.get("id") is None:
            raise _Unsent(message)
        raise ProtocolError(code, message)

    async def _reconnect(self) -> None:
        assert self._path is not None
        with contextlib.suppress(OSError, anyio.BrokenResourceError):
            await self._stream.aclose()
        self._stream = await _open(self._path)
        self._reader = BufferedByteReceiveStream(self._stream)
        await self._greet()

    async def _greet(self) -> None:
        for cmd, args in self._hello:
            try:
                await self._exchange(cmd, args)
            except _Unsent as exc:
                raise ProtocolError("closed", f"the connection is gone: {exc}") from exc

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


async def _open(path: str) -> ByteStream:
    if path.startswith(TLS_SCHEME):  # an agent socket over TCP: see "Over TLS" below
        return await open_tls(path)
    try:
        stream = await anyio.connect_unix(path)
    except OSError as exc:
        raise ProtocolError(
            "unreachable", f"cannot connect to {path}: {exc.strerror or exc}"
        ) from exc
    try:
        return await open_transport_stream(stream)
    except BaseException:
        await stream.aclose()
        raise


async def connect_client(
    path: str | os.PathLike[str], hello: Sequence[tuple[str, Mapping[str, JSON]]] = ()
) -> Client:
    """A client on the socket at `path`, after the `hello` calls (made again whenever
    the client has to reconnect)."""
    client = Client(await _open(os.fspath(path)), os.fspath(path), hello)
    try:
        async with client._lock:
            await client._greet()
    except BaseException:
        await client.aclose()
        raise
    return client


# --- Over TLS ------------------------------------------------------------------------
# The client's side of the agent protocol over TLS: `HIVE_SOCKET=tls://HOST:PORT`.
# `connect_client` hands any address starting with `tls://` here, so every client of an
# agent socket (the harness, the stdio MCP server claude starts) reaches hive-c0re over
# TCP the same way it reaches a unix socket, and gets the same commands (the server is
# `controller.agent_tls`). A connection is TLS, verified against the CA in `HIVE_TLS_CA`
# (else the system's), with `HIVE_TLS_SERVER_NAME` as the name to verify when it differs
# from HOST; then one `login` line with the ServiceAccount token read from
# `HIVE_TOKEN_FILE` (default `/var/run/secrets/hyperhive/token`), read afresh for each
# connection because the kubelet rotates it. A refused login is a `ProtocolError` with
# the server's code (`forbidden`, `unreachable`).

TLS_SCHEME = "tls://"
DEFAULT_TOKEN_FILE = "/var/run/secrets/hyperhive/token"
_MAX_TOKEN = 16 * 1024
HANDSHAKE_TIMEOUT = 10.0


def parse_tls_address(address: str) -> tuple[str, int]:
    """`tls://host:port` -> (host, port); ValueError when it is not one."""
    rest = address[len(TLS_SCHEME) :] if address.startswith(TLS_SCHEME) else ""
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not tls://HOST:PORT")
    return host.strip("[]"), int(port)


def _context(env: Mapping[str, str]) -> ssl.SSLContext:
    ca = env.get("HIVE_TLS_CA", "")
    return ssl.create_default_context(cafile=ca or None)


def _token(env: Mapping[str, str]) -> str:
    path = env.get("HIVE_TOKEN_FILE") or DEFAULT_TOKEN_FILE
    try:
        with open(path, "rb") as fh:
            return fh.read(_MAX_TOKEN).decode().strip()
    except OSError as exc:
        raise ProtocolError("unreachable", f"cannot read the token {path}: {exc}") from exc


async def open_tls(address: str, env: Mapping[str, str] | None = None) -> ByteStream:
    """A logged-in TLS connection to the agent protocol at `address`."""
    env = os.environ if env is None else env
    try:
        host, port = parse_tls_address(address)
    except ValueError as exc:
        raise ProtocolError("unreachable", str(exc)) from exc
    token = _token(env)
    try:
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            stream = await anyio.connect_tcp(
                host,
                port,
                tls=True,
                ssl_context=_context(env),
                tls_hostname=env.get("HIVE_TLS_SERVER_NAME") or host,
                tls_standard_compatible=False,
            )
    except (OSError, ssl.SSLError, TimeoutError, anyio.BrokenResourceError) as exc:
        raise ProtocolError("unreachable", f"cannot connect to {address}: {exc}") from exc
    try:
        login = {"id": 0, "cmd": "login", "args": {"token": token}}
        await stream.send(json.dumps(login).encode() + b"\n")
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            line = await BufferedByteReceiveStream(stream).receive_until(b"\n", MAX_LINE)
        answer = json.loads(line)
        if not answer.get("ok"):
            err = answer.get("error") or {}
            raise ProtocolError(str(err.get("code", "forbidden")), str(err.get("message", "")))
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        if isinstance(
            exc,
            (
                OSError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                TimeoutError,
                anyio.BrokenResourceError,
                ValueError,
            ),
        ):
            raise ProtocolError("unreachable", f"login at {address} failed: {exc!r}") from exc
        raise
    return stream
