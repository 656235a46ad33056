"""Agent specs: the validated content of `agents/<name>/agent.toml`, names and ports.

The name rule is checked before a name ever reaches a path, a socket or a container, so
every entry point (git tree, admin socket, manager tools) calls `check_name`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "DASHBOARD_PORT",
    "MANAGER",
    "MANAGER_PORT",
    "NAME_RE",
    "AgentSpec",
    "InvalidNameError",
    "InvalidSpecError",
    "Role",
    "check_name",
    "parse_spec",
    "port_for",
    "role_for",
]

MANAGER = "hm1nd"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DASHBOARD_PORT = 7000
MANAGER_PORT = 8000
_PORT_BASE = 8100
_PORT_SPAN = 900

Role = Literal["manager", "agent"]


class InvalidNameError(ValueError):
    """Raised when an agent name does not match `^[a-z][a-z0-9-]{0,30}$`."""


class InvalidSpecError(ValueError):
    """Raised when an `agent.toml` is not valid TOML or does not fit `AgentSpec`."""


class AgentSpec(BaseModel):
    """The keys of `agent.toml`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str = ""
    model: str | None = None
    enabled: bool = True
    allowed_tools: tuple[str, ...] = ()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid agent name {name!r}: use 1-31 chars of a-z, 0-9 and '-', "
            "starting with a letter"
        )
    return name


def role_for(name: str) -> Role:
    return "manager" if name == MANAGER else "agent"


def port_for(name: str) -> int:
    """The agent's web port: the manager's is fixed, others a stable hash into 8100-8999."""
    if name == MANAGER:
        return MANAGER_PORT
    digest = hashlib.sha256(name.encode()).digest()
    return _PORT_BASE + int.from_bytes(digest[:4], "big") % _PORT_SPAN


def parse_spec(data: bytes) -> AgentSpec:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSpecError(f"agent.toml is not valid TOML: {exc}") from exc
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'agent.toml'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidSpecError(problems) from exc
