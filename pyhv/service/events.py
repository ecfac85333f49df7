"""The event bus: state changes and job progress, fanned out to every ``GET /events`` stream.

Events carry a sequence number; a client that reconnects with ``Last-Event-ID`` gets what it
missed from a short backlog. A subscriber that falls too far behind is dropped (its stream ends)
rather than slowing pyhvd down; it reconnects and catches up from the backlog.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

BACKLOG = 1000
QUEUE_SIZE = 1000


class Event(BaseModel):
    id: int
    type: str
    time: datetime
    data: dict[str, Any]

    def to_sse(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n"


class Subscription:
    """Registered on creation, so nothing published after it was made is missed."""

    def __init__(self, bus: EventBus, after: int | None) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self._last = bus.last_id if after is None else after
        self._replay = [e for e in bus.backlog() if e.id > self._last]
        bus._queues.add(self.queue)

    async def get(self) -> Event | None:
        """The next event, or None once the bus dropped or closed this subscription.

        Safe to cancel (as ``asyncio.wait_for`` does): nothing is consumed before the await.
        """
        while True:
            if self._replay:
                event: Event | None = self._replay.pop(0)
            else:
                event = await self.queue.get()
            if event is None:
                return None
            if event.id > self._last:
                self._last = event.id
                return event

    def close(self) -> None:
        self._bus._queues.discard(self.queue)


class EventBus:
    """Publish from the event loop's thread; each subscriber has a bounded queue."""

    def __init__(self) -> None:
        self.last_id = 0
        self._backlog: deque[Event] = deque(maxlen=BACKLOG)
        self._queues: set[asyncio.Queue[Event | None]] = set()

    def backlog(self) -> list[Event]:
        return list(self._backlog)

    def publish(self, type_: str, **data: Any) -> Event:
        self.last_id += 1
        event = Event(id=self.last_id, type=type_, time=datetime.now(UTC), data=data)
        self._backlog.append(event)
        for queue in list(self._queues):
            if queue.full():
                self._queues.discard(queue)
                _end(queue)
            else:
                queue.put_nowait(event)
        return event

    def subscribe(self, after: int | None = None) -> Subscription:
        """Events from now on; with ``after``, first the backlog's events newer than it."""
        return Subscription(self, after)

    def close(self) -> None:
        """End every stream, so the HTTP server can shut down without waiting for clients."""
        for queue in self._queues:
            _end(queue)
        self._queues.clear()


def _end(queue: asyncio.Queue[Event | None]) -> None:
    """Put the end marker, making room for it by dropping the oldest event when full."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)
