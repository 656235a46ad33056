"""A scripted fake of the Anthropic Messages API, served on loopback for the real claude CLI.

Tests push `Reply` values onto a script; each *main-loop* request from claude (one that
offers tools, which every agent-loop request does) takes the first reply whose `when`
predicate matches it. Side requests (no tools: titles, quota probes, haiku helpers),
`count_tokens`, `HEAD /api/hello` and unknown paths get harmless canned answers so they
never eat the script. Every request is recorded for assertions.

Measured with claude 2.1.330 in `--print` mode: it sends `HEAD /api/hello` (a connectivity
probe) and `POST /v1/messages?beta=true` with `stream: true`; the message list may hold
`role: "system"` entries besides user/assistant ones.

A `hang()` reply opens the stream and then stalls until the client goes away (or the
fake closes), so cancellation tests have a turn that is really in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "FakeAnthropic",
    "Reply",
    "SeenRequest",
    "claude_env",
    "hang",
    "open_fake_anthropic",
    "text",
    "tool_use",
]

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class SeenRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: JSONDict | None
    scripted: bool = False

    @property
    def tool_names(self) -> list[str]:
        tools = (self.body or {}).get("tools") or []
        return [str(t.get("name")) for t in tools if isinstance(t, dict)]

    @property
    def system_text(self) -> str:
        system = (self.body or {}).get("system")
        if isinstance(system, str):
            return system
        if isinstance(system, list):
            return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
        return ""

    @property
    def messages(self) -> list[JSONDict]:
        return list((self.body or {}).get("messages") or [])

    def _user_blocks(self) -> list[JSONDict]:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return [{"type": "text", "text": content}]
                return [b for b in content or [] if isinstance(b, dict)]
        return []

    @property
    def last_user_text(self) -> str:
        return "\n".join(
            str(b.get("text", "")) for b in self._user_blocks() if b.get("type") == "text"
        )

    @property
    def tool_results(self) -> list[JSONDict]:
        """The tool_result blocks of the last user message (what a tool call returned)."""
        return [b for b in self._user_blocks() if b.get("type") == "tool_result"]

    def mentions(self, needle: str) -> bool:
        """True when `needle` occurs in the system prompt or any message (for `when=`)."""
        return needle in self.system_text or needle in json.dumps(self.messages)


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _ToolUse:
    name: str
    input: Mapping[str, Any]


Block = _Text | _ToolUse


@dataclass(frozen=True)
class Reply:
    """One scripted model reply; build it with `text`, `tool_use` or `hang`."""

    blocks: tuple[Block, ...]
    when: Callable[[SeenRequest], bool] | None = None
    delay: float = 0.0
    hang: bool = False
    # The reply waits for this event (a turn held mid-flight until the test lets it end).
    until: asyncio.Event | None = None
    usage: Mapping[str, int] = field(
        default_factory=lambda: {"input_tokens": 10, "output_tokens": 5}
    )

    @property
    def stop_reason(self) -> str:
        return "tool_use" if any(isinstance(b, _ToolUse) for b in self.blocks) else "end_turn"


def text(
    body: str,
    *,
    when: Callable[[SeenRequest], bool] | None = None,
    delay: float = 0.0,
    until: asyncio.Event | None = None,
) -> Reply:
    return Reply((_Text(body),), when=when, delay=delay, until=until)


def tool_use(
    name: str,
    input: Mapping[str, Any],
    *,
    say: str = "",
    when: Callable[[SeenRequest], bool] | None = None,
) -> Reply:
    blocks: tuple[Block, ...] = (_ToolUse(name, dict(input)),)
    return Reply(((_Text(say), *blocks) if say else blocks), when=when)


def hang(*, when: Callable[[SeenRequest], bool] | None = None) -> Reply:
    return Reply((_Text("thinking..."),), when=when, hang=True)


_DEFAULT = Reply((_Text("(fake anthropic: nothing scripted)"),))
_SIDE = Reply((_Text("ok"),), usage={"input_tokens": 1, "output_tokens": 1})


def _sse(event: str, data: JSONDict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FakeAnthropic:
    """The fake's state: the script, the recorded requests, and the aiohttp app."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self._script: list[Reply] = []
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._changed = asyncio.Event()
        self.url = ""

    # -- scripting and assertions -------------------------------------------------
    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    @property
    def pending(self) -> list[Reply]:
        return list(self._script)

    @property
    def main_requests(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.scripted]

    async def wait_for(self, predicate: Callable[[SeenRequest], bool]) -> SeenRequest:
        """Wait until a recorded request matches; bound it with `anyio.fail_after`."""
        while True:
            for seen in self.requests:
                if predicate(seen):
                    return seen
            self._changed.clear()
            await self._changed.wait()

    def _record(self, seen: SeenRequest) -> None:
        self.requests.append(seen)
        self._changed.set()

    def _take(self, seen: SeenRequest) -> Reply:
        for i, reply in enumerate(self._script):
            if reply.when is None or reply.when(seen):
                del self._script[i]
                return reply
        return _DEFAULT

    # -- HTTP -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    async def _body(self, request: web.Request) -> JSONDict | None:
        raw = await request.read()
        if not raw:
            return None
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {"_raw": raw.decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"_raw": parsed}

    async def _other(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self._record(SeenRequest(request.method, request.path_qs, dict(request.headers), body))
        if request.method == "HEAD":
            return web.Response(status=200)
        return web.json_response(
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": "fake: no such path"},
            },
            status=404,
        )

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self._record(SeenRequest(request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"input_tokens": 10})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request) or {}
        main = bool(body.get("tools"))
        seen = SeenRequest(request.method, request.path_qs, dict(request.headers), body, main)
        reply = self._take(seen) if main else _SIDE
        self._record(seen)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.until is not None:
            await reply.until.wait()
        model = str(body.get("model", "claude-fake"))
        if not body.get("stream"):
            return web.json_response(self._message(reply, model, final=True))
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        await self._stream(resp, request, reply, model)
        return resp

    def _message(self, reply: Reply, model: str, *, final: bool) -> JSONDict:
        content: list[JSONDict] = []
        if final:
            content = [self._block(b, final=True) for b in reply.blocks]
        return {
            "id": f"msg_fake{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reply.stop_reason if final else None,
            "stop_sequence": None,
            "usage": dict(reply.usage)
            if final
            else {"input_tokens": reply.usage["input_tokens"], "output_tokens": 1},
        }

    def _block(self, block: Block, *, final: bool) -> JSONDict:
        if isinstance(block, _Text):
            return {"type": "text", "text": block.text if final else ""}
        return {
            "type": "tool_use",
            "id": f"toolu_fake{next(self._ids)}",
            "name": block.name,
            "input": dict(block.input) if final else {},
        }

    async def _stream(
        self, resp: web.StreamResponse, request: web.Request, reply: Reply, model: str
    ) -> None:
        await resp.write(
            _sse(
                "message_start",
                {"type": "message_start", "message": self._message(reply, model, final=False)},
            )
        )
        for index, block in enumerate(reply.blocks):
            start = {
                "type": "content_block_start",
                "index": index,
                "content_block": self._block(block, final=False),
            }
            await resp.write(_sse("content_block_start", start))
            if isinstance(block, _Text):
                delta: JSONDict = {"type": "text_delta", "text": block.text}
            else:
                delta = {"type": "input_json_delta", "partial_json": json.dumps(dict(block.input))}
            await resp.write(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            if reply.hang:
                await self._stall(request)
                return
            await resp.write(
                _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": reply.usage["output_tokens"]},
        }
        await resp.write(_sse("message_delta", message_delta))
        await resp.write(_sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()

    async def _stall(self, request: web.Request) -> None:
        # aiohttp does not cancel handlers when the peer leaves, so poll the transport.
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.05)


@contextlib.asynccontextmanager
async def open_fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """Serve a `FakeAnthropic` on 127.0.0.1 (a free port) until the block exits."""
    fake = FakeAnthropic()
    runner = web.AppRunner(fake.app(), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        fake._closing.set()
        await runner.cleanup()


def claude_env(
    base_url: str, config_dir: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment that makes claude run offline against the fake, non-interactively."""
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CONFIG_DIR": config_dir,
        "ENABLE_TOOL_SEARCH": "false",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    env.update(extra or {})
    return env
