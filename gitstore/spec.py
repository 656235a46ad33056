"""Agent specs: the validated content of `agents/<name>/agent.toml`.

The name rules live in `gitstore.names` and are re-exported here.
"""

from __future__ import annotations

import re
import tomllib
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from gitstore.names import (
    DASHBOARD_PORT,
    MANAGER,
    NAME_RE,
    RESERVED_NAMES,
    InvalidNameError,
    Role,
    check_name,
    role_for,
)
from gitstore.policy import Budget, RateOverride, ToolCalls, TurnsPerHour

__all__ = [
    "DASHBOARD_PORT",
    "MANAGER",
    "MAX_ALLOWED_TOOLS",
    "MAX_TOOL_RULE",
    "NAME_RE",
    "RESERVED_NAMES",
    "AgentSpec",
    "InvalidNameError",
    "InvalidSpecError",
    "Role",
    "check_name",
    "parse_spec",
    "role_for",
]


class InvalidSpecError(ValueError):
    """Raised when an `agent.toml` is not valid TOML or does not fit `AgentSpec`."""


MAX_ALLOWED_TOOLS = 64
MAX_TOOL_RULE = 200
# A Claude Code permission rule: a tool name, optionally with a specifier in parentheses
# ("Bash", "Bash(git log:*)", "mcp__hive__send"). No commas or control characters: the
# rules reach claude as one comma-separated `--allowedTools` argument.
_TOOL_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(\([^(),\x00-\x1f\x7f]*\))?")


def _tool_rule(rule: str) -> str:
    if len(rule) > MAX_TOOL_RULE or not _TOOL_RULE.fullmatch(rule):
        raise ValueError(
            f'{rule[:60]!r} is not a tool rule: use a tool name such as "Bash" or a rule '
            f'such as "Bash(git log:*)" (at most {MAX_TOOL_RULE} characters, no commas)'
        )
    return rule


ToolRule = Annotated[str, Field(strict=True), AfterValidator(_tool_rule)]


class AgentSpec(BaseModel):
    """The keys of `agent.toml`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str = ""
    model: str | None = None
    enabled: bool = True
    # Claude Code tools the agent may use besides its hive tools (`--allowedTools`).
    allowed_tools: Annotated[
        tuple[ToolRule, ...], Field(strict=False, max_length=MAX_ALLOWED_TOOLS)
    ] = ()

    # Per-agent overrides of `hive.toml`'s limits (gitstore.policy); absent: the hive's.
    budget_usd_per_day: Budget | None = None
    max_turns_per_hour: TurnsPerHour | None = None
    max_tool_calls_per_turn: ToolCalls | None = None
    rate: RateOverride = RateOverride()

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _a_list(cls, value: object) -> object:
        # TOML gives a list; anything else would only meet pydantic's "valid tuple".
        if not isinstance(value, list | tuple):
            raise ValueError('must be a list of tool names, e.g. ["Bash", "Read"]')
        return value


def parse_spec(data: bytes) -> AgentSpec:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSpecError(f"agent.toml is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        # tomllib recurses once per nested array or inline table: a 2 KB file can
        # exhaust the stack, and that must stay this file's error.
        raise InvalidSpecError("agent.toml nests arrays or tables too deeply") from exc
    try:
        return AgentSpec.model_validate(raw)
    except RecursionError as exc:
        raise InvalidSpecError("agent.toml nests arrays or tables too deeply") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'agent.toml'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidSpecError(problems) from exc
