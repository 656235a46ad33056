"""Notification targets: the `[[notify]]` tables of the hive's policy file, `hive.toml`.

```toml
[[notify]]
kind = "webhook"             # webhook | ntfy | slack
url_env = "HIVE_NOTIFY_URL"  # the variable in hive-c0re's environment holding the URL
events = ["approval", "question", "stalled", "hold", "alarm"]  # default: all
```

A URL with a token in it is a secret, so git holds only the *name* of the environment
variable that holds it. This module validates the tables; the policy file's parser
(`gitstore.policy`) and the notifier (`controller.notify`) share it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "MAX_NOTIFY_TARGETS",
    "NOTIFY_EVENTS",
    "NotifyEvent",
    "NotifyTarget",
    "parse_notify",
]

NotifyEvent = Literal["approval", "question", "stalled", "hold", "alarm"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("approval", "question", "stalled", "hold", "alarm")
MAX_NOTIFY_TARGETS = 16
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")


class NotifyTarget(BaseModel):
    """One provider to notify; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal["webhook", "ntfy", "slack"]
    url_env: str
    events: Annotated[tuple[NotifyEvent, ...], Field(strict=False, min_length=1)] = NOTIFY_EVENTS

    @field_validator("url_env")
    @classmethod
    def _an_env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(
                f"{value[:60]!r} is not an environment variable name (A-Z, 0-9, _): "
                "name the variable that holds the URL, never the URL itself"
            )
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _a_list(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of events, some of {list(NOTIFY_EVENTS)}")
        if len(set(value)) != len(value):
            raise ValueError("names an event twice")
        return value


def parse_notify(raw: object) -> tuple[NotifyTarget, ...]:
    """The targets of a `notify` value as TOML gives it (a list of tables).

    Raises ValueError with every problem, each prefixed by its place
    (`notify[0].url_env: ...`)."""
    if not isinstance(raw, list):
        raise ValueError("notify: must be an array of tables ([[notify]])")
    if len(raw) > MAX_NOTIFY_TARGETS:
        raise ValueError(f"notify: at most {MAX_NOTIFY_TARGETS} targets, not {len(raw)}")
    targets: list[NotifyTarget] = []
    problems: list[str] = []
    for i, table in enumerate(raw):
        try:
            targets.append(NotifyTarget.model_validate(table))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"notify[{i}]{'.' + where if where else ''}: {err['msg']}")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(targets)
