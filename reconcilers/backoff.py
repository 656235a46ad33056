"""Exponential backoff: the one rule every retry loop of hyperhive follows.

The n-th consecutive failure waits `base * 2 ** (n - 1)`, capped at `cap`; no failures,
no wait. The work queue (a failing reconcile), the agents reconciler (crash restarts and
runtime errors), the harness (a lost hive socket, a failed turn) and the UI servers (a
taken port, a crashed page) all retry with it, each with its own base and cap.

A leaf on purpose: it imports nothing of ours, so every package may import it without
bending the import direction (`ui -> controller -> reconcilers -> gitstore`), the harness
included, which otherwise imports only the socket protocol and `gitstore.names`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]

# 2.0 ** 1024 overflows a float; 64 doublings exceed any cap with a sane base.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got {self.base} and {self.cap}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))

    def delays(self) -> Iterator[float]:
        """The waits after the first, second, ... failure: for a loop that retries."""
        failures = 0
        while True:
            failures += 1
            yield self.delay(failures)
