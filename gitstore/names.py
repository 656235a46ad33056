"""Agent names, roles and ports: the rules every entry point checks before a name reaches
a path, a socket or a container. No pydantic here, so the harness can import it cheaply.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

__all__ = [
    "DASHBOARD_PORT",
    "MANAGER",
    "MANAGER_PORT",
    "NAME_RE",
    "RESERVED_NAMES",
    "InvalidNameError",
    "Role",
    "check_name",
    "port_for",
    "role_for",
]

MANAGER = "hm1nd"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# Names that already mean someone else: the human (the broker's sender and recipient
# `operator`) and the controller itself. An agent named so would receive what is meant
# for them and speak as them.
RESERVED_NAMES = frozenset({"operator", "hive-c0re"})
DASHBOARD_PORT = 7000
MANAGER_PORT = 8000
_PORT_BASE = 8100
_PORT_SPAN = 900

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


def port_for(name: str) -> int:
    """The agent's web port: the manager's is fixed, others a stable hash into 8100-8999."""
    if name == MANAGER:
        return MANAGER_PORT
    digest = hashlib.sha256(name.encode()).digest()
    return _PORT_BASE + int.from_bytes(digest[:4], "big") % _PORT_SPAN
