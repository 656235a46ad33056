"""The hive's event bus: every state change is published here once, and the admin
`watch` stream, the dashboard's SSE, the audit log and the reconcile triggers read from
it. A `Fanout` (see there for delivery and cut-off) whose types are `EventType`, stamped
with the store's clock.
"""

from __future__ import annotations

from controller.events import EventType
from controller.fanout import Event, Fanout, Subscription
from controller.store import now_iso

__all__ = ["Bus", "Event", "EventType", "Subscription"]


class Bus(Fanout[EventType]):
    def __init__(self) -> None:
        super().__init__(now_iso)
