"""The in-process event bus: every state change is published here once, and the admin
`watch` stream, the dashboard's SSE and the reconcile triggers read from it.

`publish` never blocks and never awaits: a subscriber that falls `buffer` events behind is
cut off (its stream ends) instead of slowing the publisher; it reconnects and reads
current state afresh, which is what every consumer does anyway.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from controller.protocol import jsonable
from controller.store import now_iso

__all__ = ["Bus", "Event", "Subscription"]


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    ts: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The event as JSON types: the values it carries are encoded here, once per use,
        so publishing stays free for events nobody reads."""
        return {"id": self.id, "type": self.type, "ts": self.ts, **jsonable(self.data)}


class Subscription:
    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._receive.__aiter__()

    async def next(self) -> Event:
        return await self._receive.receive()

    def next_nowait(self) -> Event:
        """The next queued event without waiting; raises `anyio.WouldBlock` when none is.

        Lets a consumer drain a burst in one go (the dashboard's SSE writes it as one
        chunk)."""
        return self._receive.receive_nowait()


class Bus:
    def __init__(self) -> None:
        self._subscribers: dict[int, tuple[MemoryObjectSendStream[Event], frozenset[str]]] = {}
        self._ids = itertools.count(1)
        self._sub_ids = itertools.count(1)

    def publish(self, type: str, **data: Any) -> Event:
        event = Event(id=next(self._ids), type=type, ts=now_iso(), data=data)
        for key, (send, types) in list(self._subscribers.items()):
            if types and type not in types:
                continue
            try:
                send.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.pop(key, None)
                send.close()
        return event

    @contextmanager
    def subscribe(self, buffer: int = 10_000, types: Iterable[str] = ()) -> Iterator[Subscription]:
        """Receive every event published from now on, or only those of `types`."""
        send, receive = anyio.create_memory_object_stream[Event](buffer)
        key = next(self._sub_ids)
        self._subscribers[key] = (send, frozenset(types))
        try:
            yield Subscription(receive)
        finally:
            self._subscribers.pop(key, None)
            send.close()
            receive.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
