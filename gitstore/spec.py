"""Agent specs: the validated content of `agents/<name>/agent.toml`.

The name and port rules live in `gitstore.names` and are re-exported here.
"""

from __future__ import annotations

import tomllib

from pydantic import BaseModel, ConfigDict, ValidationError

from gitstore.names import (
    DASHBOARD_PORT,
    MANAGER,
    MANAGER_PORT,
    NAME_RE,
    InvalidNameError,
    Role,
    check_name,
    port_for,
    role_for,
)

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


class InvalidSpecError(ValueError):
    """Raised when an `agent.toml` is not valid TOML or does not fit `AgentSpec`."""


class AgentSpec(BaseModel):
    """The keys of `agent.toml`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str = ""
    model: str | None = None
    enabled: bool = True
    allowed_tools: tuple[str, ...] = ()


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
