"""Agent names and roles: the rules every entry point checks before a name reaches
a path, a socket or a container. No pydantic here, so the harness can import it cheaply.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "DASHBOARD_PORT",
    "MANAGER",
    "NAME_RE",
    "InvalidNameError",
    "Role",
    "check_name",
    "role_for",
]

MANAGER = "hm1nd"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DASHBOARD_PORT = 7000

Role = Literal["manager", "agent"]


class InvalidNameError(ValueError):
    """Raised when an agent name does not match `^[a-z][a-z0-9-]{0,30}$`."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid agent name {name!r}: use 1-31 chars of a-z, 0-9 and '-', "
            "starting with a letter"
        )
    return name


def role_for(name: str) -> Role:
    return "manager" if name == MANAGER else "agent"
