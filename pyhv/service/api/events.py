"""``/events``: a server-sent-events stream of state changes and job progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from pyhv.service.api.deps import Reader, Svc
from pyhv.service.events import Subscription

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0


@router.get(
    "/events",
    dependencies=[Reader],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    svc: Svc, last_event_id: Annotated[int | None, Header()] = None
) -> StreamingResponse:
    """Events ``vm.created``, ``vm.changed``, ``vm.removed``, ``vm.state`` and ``job``.

    A reconnecting client sends ``Last-Event-ID`` and first receives what it missed.
    """
    subscription = svc.events.subscribe(after=last_event_id)
    return StreamingResponse(
        _sse(subscription),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


async def _sse(subscription: Subscription) -> AsyncIterator[str]:
    try:
        # The first comment tells the client the subscription is in place.
        yield ": subscribed\n\n"
        while True:
            try:
                event = await asyncio.wait_for(subscription.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if event is None:
                return
            yield event.to_sse()
    finally:
        subscription.close()
