"""What one agent may make the broker store: the limits, and the send rate they imply.

Measured before these limits: an agent sent 256 KiB messages at ~97 MB/s, 1.1 GB of
sqlite in 10 s. Now, per message, a body of at most `message_bytes` (counted as it
travels: JSON, escapes included, so a message always fits in a socket line); per
recipient agent, at most `inbox_messages` and `inbox_bytes` not yet acknowledged (the
back-pressure a slow or stopped agent puts on its senders); per sending agent, at most
`send_bytes_per_minute` (a token bucket, so bursts up to that are free): the bound on
how fast any agent can grow the database, also for messages to the operator, who never
acknowledges. The operator's own sends are not limited but by the message size.

The hive's policy (`hive.toml`, `gitstore.policy`) adds counted rates per agent, token
buckets of the same kind: `send_per_minute` (checked here, beside the bytes) and
`ask_operator_per_hour` (checked by the questions). A refused call is a `RateLimitError`
(code `quota`) whose message is what the model sees: "rate limit: 10 sends per minute;
next in 12 s".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from controller.errors import QuotaError, TooLargeError
from reconcilers.clock import Clock

__all__ = [
    "MESSAGE_COST",
    "BrokerLimits",
    "CountRate",
    "RateLimitError",
    "SendRate",
    "TokenBuckets",
    "body_size",
    "check_body",
]

# What a message costs the send rate beyond its body: rows, indexes, events.
MESSAGE_COST = 512


@dataclass(frozen=True)
class BrokerLimits:
    message_bytes: int = 256 * 1024
    inbox_messages: int = 1000
    inbox_bytes: int = 16 * 1024 * 1024
    send_bytes_per_minute: int = 16 * 1024 * 1024


def body_size(body: str) -> int:
    """The body's bytes inside a socket line (JSON-escaped, ASCII)."""
    return len(json.dumps(body)) - 2


def check_body(body: str, limits: BrokerLimits) -> int:
    """The body's size, or `TooLargeError` if it is over the limit."""
    size = body_size(body)
    if size > limits.message_bytes:
        raise TooLargeError(
            f"message body is {size} bytes (as JSON); the limit is {limits.message_bytes} "
            "bytes: shorten it, or send it in parts"
        )
    return size


def _mib(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def inbox_full(
    recipient: str, held: int, held_bytes: int, size: int, limits: BrokerLimits
) -> QuotaError | None:
    """Why `recipient`'s inbox cannot take a message of `size` bytes now, if it cannot."""
    wait = f"wait until {recipient} has read some (each turn acknowledges one), then send again"
    if held >= limits.inbox_messages:
        return QuotaError(f"{recipient}'s inbox holds {held} unread messages, the limit; {wait}")
    if held_bytes + size > limits.inbox_bytes:
        return QuotaError(
            f"{recipient}'s inbox holds {_mib(held_bytes)} of unread messages and this one "
            f"({size} bytes) would pass the limit of {_mib(limits.inbox_bytes)}; {wait}"
        )
    return None


class RateLimitError(QuotaError):
    """Raised when an agent calls `send` or `ask_operator` faster than its policy's rate."""

    def __init__(self, message: str, *, agent: str, what: str, limit: str, wait: float) -> None:
        super().__init__(message)
        self.agent, self.what, self.limit, self.wait = agent, what, limit, wait


class TokenBuckets:
    """One token bucket per key, refilled continuously: `take` spends or says how long
    until it could (the capacity is the key's own, so a changed policy applies at once)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, cost: float, capacity: float, per_second: float) -> float:
        """Spend `cost` from `key`'s bucket and answer 0, or answer the seconds to wait."""
        now = self.clock.now()
        tokens, at = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * per_second)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / per_second
        self._buckets[key] = (tokens - cost, now)
        return 0.0


class CountRate:
    """A counted rate per agent (`what` per `per`): `n` calls, then one more every
    `per / n` seconds."""

    def __init__(self, what: str, per: Literal["minute", "hour"], clock: Clock) -> None:
        self.what, self.per = what, per
        self.seconds = 60.0 if per == "minute" else 3600.0
        self._buckets = TokenBuckets(clock)

    def spend(self, agent: str, limit: int) -> None:
        wait = self._buckets.take(agent, 1.0, float(limit), limit / self.seconds)
        if wait > 0:
            shown = f"{limit} {self.what}{'s' if limit != 1 else ''} per {self.per}"
            raise RateLimitError(
                f"rate limit: {shown}; next in {max(1, math.ceil(wait))} s",
                agent=agent,
                what=self.what,
                limit=shown,
                wait=wait,
            )


class SendRate:
    """A token bucket per sender: `send_bytes_per_minute`, refilled continuously."""

    def __init__(self, limits: BrokerLimits, clock: Clock) -> None:
        self.capacity = float(limits.send_bytes_per_minute)
        self.per_second = self.capacity / 60.0
        self.clock = clock
        self._buckets = TokenBuckets(clock)

    def spend(self, sender: str, size: int) -> None:
        """Take a message of `size` bytes from `sender`'s bucket, or raise `QuotaError`."""
        # Never more than a full bucket, so a message of the largest size always goes.
        cost = min(size + MESSAGE_COST, self.capacity)
        wait = self._buckets.take(sender, cost, self.capacity, self.per_second)
        if wait > 0:
            raise QuotaError(
                f"{sender} sent {_mib(self.capacity)} within the last minute, the limit; "
                f"wait {wait:.1f} s and send again"
            )
