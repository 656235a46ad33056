"""In-process fan-out of events to subscribers, typed by what the event types are.

A leaf: it imports nothing of ours, so both sides share it: the hive's bus
(`controller.bus`, typed by `EventType`) and the harness's live stream for its page
(`harness.agent`, which must not pull in the controller's store).

`publish` never blocks and never awaits: a subscriber that falls `buffer` events behind is
cut off (its stream ends) instead of slowing the publisher; it reconnects and reads
current state afresh, which is what every consumer does anyway.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Event", "Fanout", "Subscription"]

T = TypeVar("T", bound=str)


def _utc_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    ts: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The event as JSON types: the values it carries are encoded here, on use, so
        publishing stays free for events nobody reads."""
        # Imported here: the harness's live stream never encodes values this way, and
        # pydantic_core would add ~4 MB to every harness.
        from pydantic_core import to_jsonable_python

        data = to_jsonable_python(self.data, fallback=str)
        return {"id": self.id, "type": str(self.type), "ts": self.ts, **data}


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


class Fanout(Generic[T]):
    """Publish events of type `T` to every current subscriber."""

    def __init__(self, now: Callable[[], str] = _utc_iso) -> None:
        self._now = now
        self._subscribers: dict[int, tuple[MemoryObjectSendStream[Event], frozenset[str]]] = {}
        self._ids = itertools.count(1)
        self._sub_ids = itertools.count(1)

    def publish(self, type: T, **data: Any) -> Event:
        event = Event(id=next(self._ids), type=type, ts=self._now(), data=data)
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
    def subscribe(self, buffer: int = 10_000, types: Iterable[T] = ()) -> Iterator[Subscription]:
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
