"""The hive's own policy: `hive.toml` at the root of the desired-state tree.

```toml
budget_usd_per_day = 5.0          # per agent, per UTC day (none: no cap)
hive_budget_usd_per_day = 50.0    # all agents together (none: no cap)
max_turns_per_hour = 120          # per agent, over the last hour
max_tool_calls_per_turn = 200     # a turn over it is interrupted
ready_timeout_seconds = 300       # an approval that leaves an agent not Ready this long...
auto_rollback = "propose"         # ...is rolled back: "propose" (default), "apply" or "off"

[rate]                            # token buckets: bursts up to the rate are free
send_per_minute = 60
ask_operator_per_hour = 30

[[notify]]                        # see gitstore.notify_spec
kind = "webhook"
url_env = "HIVE_NOTIFY_URL"
```

The file is optional (every key has a default) and validated strictly like `agent.toml`:
unknown keys, wrong types and limits out of their bounds are plan errors, so a bad
policy can never be approved. Each `agent.toml` may override the per-agent keys
(`budget_usd_per_day`, `max_turns_per_hour`, `max_tool_calls_per_turn`, `[rate]`); what
holds for one agent is `Policy.for_agent(spec)`, an `AgentLimits`. Changing a limit is a
commit an operator approves, like everything else.

The daemon reads the applied policy in one way: `GitStore.applied_policy()` (the tree's
`hive.toml` at applied `main`, parsed; the defaults when it is absent), which hive-c0re
caches in `Hive.policy` between moves of applied `main`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gitstore.notify_spec import NotifyTarget, parse_notify

if TYPE_CHECKING:
    from gitstore.spec import AgentSpec

__all__ = [
    "POLICY_FILE",
    "AgentLimits",
    "InvalidPolicyError",
    "Policy",
    "RateOverride",
    "RatePolicy",
    "parse_policy",
]

POLICY_FILE = "hive.toml"
POLICY_MAX_BYTES = 64 * 1024


class InvalidPolicyError(ValueError):
    """Raised when `hive.toml` is not valid TOML or does not fit `Policy`."""


# The bounds of every limit: a negative, zero or absurd value is refused with a message.
Budget = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
TurnsPerHour = Annotated[int, Field(ge=1, le=100_000)]
ToolCalls = Annotated[int, Field(ge=1, le=100_000)]
SendsPerMinute = Annotated[int, Field(ge=1, le=100_000)]
AsksPerHour = Annotated[int, Field(ge=1, le=10_000)]
ReadySeconds = Annotated[int, Field(ge=1, le=7 * 24 * 3600)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RatePolicy(_Strict):
    """`[rate]` of `hive.toml`: token buckets per agent."""

    send_per_minute: SendsPerMinute = 60
    ask_operator_per_hour: AsksPerHour = 30


class RateOverride(_Strict):
    """`[rate]` of an `agent.toml`: any key not given is the hive's."""

    send_per_minute: SendsPerMinute | None = None
    ask_operator_per_hour: AsksPerHour | None = None


class Policy(_Strict):
    """The keys of `hive.toml`; unknown keys are errors."""

    budget_usd_per_day: Budget | None = None
    hive_budget_usd_per_day: Budget | None = None
    max_turns_per_hour: TurnsPerHour = 120
    max_tool_calls_per_turn: ToolCalls = 200
    ready_timeout_seconds: ReadySeconds = 300
    auto_rollback: Literal["propose", "apply", "off"] = "propose"
    rate: RatePolicy = RatePolicy()
    notify: tuple[NotifyTarget, ...] = ()

    def for_agent(self, spec: AgentSpec | None) -> AgentLimits:
        """What holds for one agent: its `agent.toml`'s overrides over the hive's."""
        if spec is None:
            return AgentLimits(
                self.budget_usd_per_day,
                self.max_turns_per_hour,
                self.max_tool_calls_per_turn,
                self.rate.send_per_minute,
                self.rate.ask_operator_per_hour,
            )
        rate = spec.rate
        return AgentLimits(
            budget_usd_per_day=_first(spec.budget_usd_per_day, self.budget_usd_per_day),
            max_turns_per_hour=_first(spec.max_turns_per_hour, self.max_turns_per_hour),
            max_tool_calls_per_turn=_first(
                spec.max_tool_calls_per_turn, self.max_tool_calls_per_turn
            ),
            send_per_minute=_first(rate.send_per_minute, self.rate.send_per_minute),
            ask_operator_per_hour=_first(
                rate.ask_operator_per_hour, self.rate.ask_operator_per_hour
            ),
        )


T = TypeVar("T")


def _first(own: T | None, hive: T) -> T:
    return hive if own is None else own


@dataclass(frozen=True)
class AgentLimits:
    """The limits that hold for one agent (`Policy.for_agent`)."""

    budget_usd_per_day: float | None
    max_turns_per_hour: int
    max_tool_calls_per_turn: int
    send_per_minute: int
    ask_operator_per_hour: int


def _problems(exc: ValidationError, where: str) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or where}: "
        + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
        for err in exc.errors()
    )


def parse_policy(data: bytes) -> Policy:
    """`hive.toml`'s bytes as a `Policy`; `InvalidPolicyError` with every problem."""
    if len(data) > POLICY_MAX_BYTES:
        raise InvalidPolicyError(
            f"hive.toml is {len(data)} bytes, more than the limit of {POLICY_MAX_BYTES}"
        )
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidPolicyError(f"hive.toml is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise InvalidPolicyError("hive.toml nests arrays or tables too deeply") from exc
    problems: list[str] = []
    notify: tuple[NotifyTarget, ...] = ()
    if "notify" in raw:
        try:
            notify = parse_notify(raw.pop("notify"))
        except ValueError as exc:
            problems.append(str(exc))
    try:
        policy = Policy.model_validate(raw)
    except RecursionError as exc:
        raise InvalidPolicyError("hive.toml nests arrays or tables too deeply") from exc
    except ValidationError as exc:
        problems.append(_problems(exc, "hive.toml"))
        policy = None
    if problems or policy is None:
        raise InvalidPolicyError("; ".join(problems))
    return policy.model_copy(update={"notify": notify})
