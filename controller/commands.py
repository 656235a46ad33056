"""The command table behind a socket: name -> typed arguments -> handler.

A command is registered with a pydantic model of its arguments (unknown keys are
errors), so bad input becomes one `invalid` answer with a message a person can act on,
and adding a command is one decorated function. A streaming command's handler returns
an async iterator of events instead of a result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.errors import InvalidError, NotFoundError
from controller.protocol import Request

__all__ = ["Args", "Command", "CommandTable", "NoArgs"]

C = TypeVar("C")
A = TypeVar("A", bound="Args")


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArgs(Args):
    pass


@dataclass(frozen=True)
class Command(Generic[C]):
    name: str
    args: type[Args]
    handler: Callable[[C, Any], Awaitable[Any]]
    streaming: bool
    help: str
    watch_peer: bool = False


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "args"
        msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class CommandTable(Generic[C]):
    """Commands for one kind of caller (`C` is what a handler gets: the hive, the agent)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command[C]] = {}

    def command(
        self, name: str, args: type[A], *, streaming: bool = False, watch_peer: bool = False
    ) -> Callable[[Callable[[C, A], Awaitable[Any]]], Callable[[C, A], Awaitable[Any]]]:
        """Register a handler; `watch_peer` cancels it if the client goes away meanwhile
        (for long waits, so a dead client does not hold on to what it waits for)."""

        def register(fn: Callable[[C, A], Awaitable[Any]]) -> Callable[[C, A], Awaitable[Any]]:
            doc = (fn.__doc__ or "").strip()
            self.commands[name] = Command(name, args, fn, streaming, doc, watch_peer)
            return fn

        return register

    def lookup(self, request: Request) -> tuple[Command[C], Args]:
        command = self.commands.get(request.cmd)
        if command is None:
            known = ", ".join(sorted(self.commands))
            raise NotFoundError(f"unknown command {request.cmd!r}; known: {known}")
        try:
            args = command.args.model_validate(dict(request.args))
        except ValidationError as exc:
            raise InvalidError(f"bad arguments for {request.cmd}: {_explain(exc)}") from exc
        return command, args

    async def call(self, ctx: C, request: Request) -> Any:
        command, args = self.lookup(request)
        return await command.handler(ctx, args)

    async def stream(self, ctx: C, command: Command[C], args: Args) -> AsyncIterator[Any]:
        iterator: AsyncIterator[Any] = await command.handler(ctx, args)
        async for event in iterator:
            yield event
