"""The command table behind a socket: name -> typed arguments -> handler.

A command is a `Spec` (its name, a pydantic model of its arguments, its help, and for
host commands how `hive` offers it) plus a handler. Arguments are validated by the model
(unknown keys are errors), so bad input becomes one `invalid` answer with a message a
person can act on. A streaming command's handler returns an async iterator of events
instead of a result. Specs are plain data, importable without the daemon: the `hive`
client builds its whole command line from the host table's specs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.errors import InvalidError, NotFoundError
from controller.protocol import Request

__all__ = ["Args", "Command", "CommandTable", "NoArgs", "Spec", "View"]

C = TypeVar("C")
A = TypeVar("A", bound="Args")

# How `hive` prints a result: a table of `columns`, audit-log lines, the line of a
# decision, `key: value` lines, or the JSON.
View = Literal[
    "table", "events", "decision", "fields", "status", "template", "json", "diff", "lines"
]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArgs(Args):
    pass


@dataclass(frozen=True)
class Spec:
    """What a command is, apart from what it does: enough to call it and document it."""

    name: str
    args: type[Args]
    help: str
    streaming: bool = False
    # Cancel the handler if the client goes away meanwhile (for long waits, so a dead
    # client does not hold on to what it waits for).
    watch_peer: bool = False
    # How `hive` offers it: the arguments taken by position (in order; the rest are
    # `--options`), what it sends for an option not given when that differs from the
    # socket's default, and how it prints the result.
    positional: tuple[str, ...] = ()
    cli_defaults: Mapping[str, object] = field(default_factory=dict)
    view: View = "fields"
    columns: tuple[str, ...] = ()
    empty: str = ""
    # The words `hive` takes for it when they are not its name (`hive applied reset`
    # for `applied-reset`), and for the "template" view a `str.format` of the result.
    words: tuple[str, ...] = ()
    template: str = ""
    # An option's name when it is not the field's (`--from` for `sender`).
    options: Mapping[str, str] = field(default_factory=dict)
    # `hive` offers `-f`: call again every second and print only what is new (logs).
    follow: bool = False
    # Without --limit, `hive` pages on through this cursor (`after_id`, `before_id`)
    # until a page is empty, so a list never silently stops at one page.
    page_on: str = ""

    @property
    def cli(self) -> tuple[str, ...]:
        return self.words or (self.name,)

    def __post_init__(self) -> None:
        named = set(self.positional) | set(self.cli_defaults) | set(self.options)
        named |= {self.page_on} - {""}
        unknown = named - set(self.args.model_fields)
        if unknown:
            raise ValueError(f"{self.name}: no such arguments: {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class Command(Generic[C]):
    spec: Spec
    handler: Callable[[C, Any], Awaitable[Any]]


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "args"
        msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class CommandTable(Generic[C]):
    """Commands for one kind of caller (`C` is what a handler gets: the hive, the agent)."""

    def __init__(self, specs: Iterable[Spec] = ()) -> None:
        self.specs: dict[str, Spec] = {s.name: s for s in specs}
        self.commands: dict[str, Command[C]] = {}

    def implement(
        self, name: str
    ) -> Callable[[Callable[[C, A], Awaitable[Any]]], Callable[[C, A], Awaitable[Any]]]:
        """Register the handler of the spec called `name` (given to the table)."""
        spec = self.specs[name]

        def register(fn: Callable[[C, A], Awaitable[Any]]) -> Callable[[C, A], Awaitable[Any]]:
            self.commands[name] = Command(spec, fn)
            return fn

        return register

    def command(
        self, name: str, args: type[A], *, streaming: bool = False, watch_peer: bool = False
    ) -> Callable[[Callable[[C, A], Awaitable[Any]]], Callable[[C, A], Awaitable[Any]]]:
        """Register a handler and its spec at once; the help is its docstring."""

        def register(fn: Callable[[C, A], Awaitable[Any]]) -> Callable[[C, A], Awaitable[Any]]:
            doc = (fn.__doc__ or "").strip()
            self.specs[name] = Spec(name, args, doc, streaming=streaming, watch_peer=watch_peer)
            return self.implement(name)(fn)

        return register

    def unimplemented(self) -> list[str]:
        """Specs without a handler (a table is complete when this is empty)."""
        return sorted(set(self.specs) - set(self.commands))

    def lookup(self, request: Request) -> tuple[Command[C], Args]:
        command = self.commands.get(request.cmd)
        if command is None:
            known = ", ".join(sorted(self.commands))
            raise NotFoundError(f"unknown command {request.cmd!r}; known: {known}")
        try:
            args = command.spec.args.model_validate(dict(request.args))
        except ValidationError as exc:
            raise InvalidError(f"bad arguments for {request.cmd}: {_explain(exc)}") from exc
        return command, args

    async def stream(self, ctx: C, command: Command[C], args: Args) -> AsyncIterator[Any]:
        iterator: AsyncIterator[Any] = await command.handler(ctx, args)
        async for event in iterator:
            yield event
