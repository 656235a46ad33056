"""The host's warm claude sessions: at most `cap` at once, least recently used goes cold.

A harness holds a slot while its session is warm, with the harness-only `warm` command on
a connection of its own: the call returns (with the reason) when the slot is taken back,
and the slot is free the moment that call ends, by its answer or by the connection
closing (a harness that exits gives its slot back without a word). A new holder over the
cap takes the slot of the agent whose last turn ended longest ago (`used`, called on each
acknowledged message); the evicted harness closes its session once its running turn, if
any, has ended. An idle claude holds ~180 MB here, so the cap is what bounds memory.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import anyio

__all__ = ["WarmSlots"]

log = logging.getLogger(__name__)


@dataclass
class _Holder:
    agent: str
    used: float
    evicted: anyio.Event = field(default_factory=anyio.Event)
    reason: str = ""


class WarmSlots:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._holders: dict[int, _Holder] = {}
        self._ids = itertools.count(1)

    @property
    def warm(self) -> list[str]:
        """The agents holding a slot, least recently used first."""
        return [h.agent for h in sorted(self._holders.values(), key=lambda h: h.used)]

    def used(self, agent: str) -> None:
        now = time.monotonic()
        for holder in self._holders.values():
            if holder.agent == agent:
                holder.used = now

    async def hold(self, agent: str) -> str:
        """Hold a slot for `agent` until it is taken back; returns why it was."""
        for other in self._holders.values():
            if other.agent == agent:  # a restarted harness: its old session is gone
                self._evict(other, "a newer session of the same agent holds the slot")
        key = next(self._ids)
        holder = self._holders[key] = _Holder(agent, time.monotonic())
        try:
            live = [h for h in self._holders.values() if not h.evicted.is_set()]
            for victim in sorted(live, key=lambda h: h.used)[: max(0, len(live) - self.cap)]:
                if victim is not holder:
                    self._evict(victim, f"the host keeps at most {self.cap} warm sessions")
            await holder.evicted.wait()
            return holder.reason
        finally:
            del self._holders[key]

    def _evict(self, holder: _Holder, reason: str) -> None:
        if not holder.evicted.is_set():
            log.info("%s goes cold: %s", holder.agent, reason)
            holder.reason = reason
            holder.evicted.set()
