"""The agent page's slash commands: `/help`, `/clear`, `/cancel`, `/compact`, `/model`.

Anything else typed into the prompt goes to the agent's inbox as the operator; a line
that must start with a slash is sent by doubling it (`//etc` sends `/etc`). An unknown
command is an error, never silently sent as a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HELP", "Command", "Controls", "UnknownCommandError", "parse", "run"]

HELP = """\
/help            this help
/clear           the next turn starts a fresh conversation (a new claude session)
/cancel          stop the running turn (its message counts as handled)
/compact         compact the conversation before the next message is handled
/model           show the model in use
/model NAME      use NAME from the next turn on (/model default: back to agent.toml)
//text           send "/text" as a message
anything else    goes to the agent's inbox as the operator"""

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,99}$")


class UnknownCommandError(ValueError):
    """Raised for a slash command that does not exist or has bad arguments."""


class Controls(Protocol):
    """What the commands act on: the harness's `Agent`."""

    @property
    def model(self) -> str | None: ...

    def clear(self) -> None: ...

    def cancel(self) -> bool: ...

    def compact(self) -> None: ...

    def set_model(self, model: str | None) -> None: ...


@dataclass(frozen=True)
class Command:
    name: str
    arg: str


def parse(text: str) -> Command | None:
    """The command in `text`, or None when it is a message."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, arg = stripped[1:].partition(" ")
    return Command(name.lower(), arg.strip())


def run(command: Command, agent: Controls) -> str:
    """Carry out a command; returns the line the page shows."""
    match command.name:
        case "help":
            return HELP
        case "clear":
            agent.clear()
            return "cleared: the next turn starts a new conversation"
        case "cancel":
            return "cancelling the running turn" if agent.cancel() else "no turn is running"
        case "compact":
            agent.compact()
            return "the conversation is compacted before the next message is handled"
        case "model":
            if not command.arg:
                return f"model: {agent.model or 'the CLI default'}"
            if command.arg in ("default", "reset"):
                agent.set_model(None)
                return f"model override removed; using {agent.model or 'the CLI default'}"
            if not _MODEL_RE.fullmatch(command.arg):
                raise UnknownCommandError(f"{command.arg!r} is not a model name")
            agent.set_model(command.arg)
            return f"model set to {command.arg} from the next turn on"
    raise UnknownCommandError(f"unknown command /{command.name}; /help lists them")


def message_text(text: str) -> str:
    """The message to send for a non-command line (a leading '//' becomes '/')."""
    stripped = text.lstrip()
    return stripped[1:] if stripped.startswith("//") else text
