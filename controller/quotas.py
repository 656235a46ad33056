"""What one agent may make the broker store: the limits, and the send rate they imply.

Measured before these limits: an agent sent 256 KiB messages at ~97 MB/s, 1.1 GB of
sqlite in 10 s. Now, per message, a body of at most `message_bytes` (counted as it
travels: JSON, escapes included, so a message always fits in a socket line); per
recipient agent, at most `inbox_messages` and `inbox_bytes` not yet acknowledged (the
back-pressure a slow or stopped agent puts on its senders); per sending agent, at most
`send_bytes_per_minute` (a token bucket, so bursts up to that are free): the bound on
how fast any agent can grow the database, also for messages to the operator, who never
acknowledges. The operator's own sends are not limited but by the message size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from controller.errors import QuotaError, TooLargeError
from reconcilers.clock import Clock

__all__ = ["MESSAGE_COST", "BrokerLimits", "SendRate", "body_size", "check_body"]

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


class SendRate:
    """A token bucket per sender: `send_bytes_per_minute`, refilled continuously."""

    def __init__(self, limits: BrokerLimits, clock: Clock) -> None:
        self.capacity = float(limits.send_bytes_per_minute)
        self.per_second = self.capacity / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # sender -> (tokens, at)

    def spend(self, sender: str, size: int) -> None:
        """Take a message of `size` bytes from `sender`'s bucket, or raise `QuotaError`."""
        # Never more than a full bucket, so a message of the largest size always goes.
        cost = min(size + MESSAGE_COST, self.capacity)
        now = self.clock.now()
        tokens, at = self._buckets.get(sender, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.per_second)
        if tokens < cost:
            self._buckets[sender] = (tokens, now)
            wait = (cost - tokens) / self.per_second
            raise QuotaError(
                f"{sender} sent {_mib(self.capacity)} within the last minute, the limit; "
                f"wait {wait:.1f} s and send again"
            )
        self._buckets[sender] = (tokens - cost, now)
