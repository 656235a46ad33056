"""Errors that reach a client as `{"ok": false, "error": {"code", "message"}}`."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "HiveError",
    "InvalidError",
    "NoSpaceError",
    "NotFoundError",
    "QuotaError",
    "TooLargeError",
]


class HiveError(Exception):
    """Raised for a request that cannot be carried out; `code` is the protocol code."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(HiveError):
    """Raised when a request names an approval, agent or message that does not exist."""

    code = "not_found"


class InvalidError(HiveError):
    """Raised when a request's arguments are malformed or break a rule."""

    code = "invalid"


class ConflictError(HiveError):
    """Raised when the request does not fit the current state (e.g. not pending)."""

    code = "conflict"


class ForbiddenError(HiveError):
    """Raised when the caller's socket does not grant the method."""

    code = "forbidden"


class NoSpaceError(HiveError):
    """Raised when a write failed because the disk is full; nothing was changed."""

    code = "no_space"


class TooLargeError(HiveError):
    """Raised when one input is bigger than its limit (a message body)."""

    code = "too_large"


class QuotaError(HiveError):
    """Raised when a request would take a party past its quota (an inbox, a send rate)."""

    code = "quota"
