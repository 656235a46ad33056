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
    "RESERVED_NAMES",
    "InvalidNameError",
    "Role",
    "check_name",
    "role_for",
]

MANAGER = "hm1nd"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# Names that already mean someone else: the human (the broker's sender and recipient
# `operator`) and the controller itself. An agent named so would receive what is meant
# for them and speak as them.
RESERVED_NAMES = frozenset({"operator", "hive-c0re"})
DASHBOARD_PORT = 7000

Role = Literal["manager", "agent"]


class InvalidNameError(ValueError):
    """Raised when an agent name does not match `^[a-z][a-z0-9-]{0,30}$` or is reserved."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid agent name {name!r}: use 1-31 chars of a-z, 0-9 and '-', "
            "starting with a letter"
        )
    if name in RESERVED_NAMES:
        raise InvalidNameError(
            f"agent name {name!r} is reserved (it names the "
            f"{'human operator' if name == 'operator' else 'controller'}): choose another"
        )
    return name


def role_for(name: str) -> Role:
    return "manager" if name == MANAGER else "agent"
