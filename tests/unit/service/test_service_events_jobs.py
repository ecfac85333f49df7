"""The event bus (fan-out, replay, slow subscribers) and jobs (progress, failure, cancel)."""

from __future__ import annotations

import asyncio

import pytest

from pyhv.errors import ConflictError, NotFoundError, StateError
from pyhv.service import events as events_mod
from pyhv.service.events import EventBus
from pyhv.service.jobs import JobContext, Jobs, JobState

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_fan_out_and_replay() -> None:
    bus = EventBus()
    bus.publish("early", n=0)
    first, second = bus.subscribe(), bus.subscribe()
    bus.publish("vm.state", n=1)
    e1, e2 = await first.get(), await second.get()
    assert e1 is not None and e2 is not None and e1.id == e2.id == 2
    assert e1.data == {"n": 1}
    replay = bus.subscribe(after=0)
    got = [await replay.get(), await replay.get()]
    assert [e.id for e in got if e] == [1, 2]
    assert "event: vm.state" in e1.to_sse() and e1.to_sse().endswith("\n\n")
    bus.close()
    assert await first.get() is None


async def test_slow_subscriber_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_mod, "QUEUE_SIZE", 2)
    bus = EventBus()
    slow = bus.subscribe()
    for n in range(5):
        bus.publish("x", n=n)
    seen = []
    while (event := await slow.get()) is not None:
        seen.append(event.id)
    # Full at the third event: the oldest queued event made room for the end marker.
    assert seen == [2]


async def test_job_completes_with_progress_events() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    jobs = Jobs(bus)

    async def work(ctx: JobContext) -> None:
        ctx.progress(40)
        await asyncio.sleep(0)

    job = jobs.submit("start", "vm-1", work)
    done = await jobs.wait(job.id)
    assert (done.state, done.progress) == (JobState.COMPLETED, 100)
    seen = []
    while len(seen) < 3:
        event = await sub.get()
        assert event is not None
        seen.append((event.data["state"], event.data["progress"]))
    assert seen == [("Running", 0), ("Running", 40), ("Completed", 100)]


async def test_job_failure_keeps_the_code() -> None:
    jobs = Jobs(EventBus())

    async def work(ctx: JobContext) -> None:
        raise ConflictError("VM 'a' is busy")

    job = await jobs.wait(jobs.submit("stop", None, work).id)
    assert job.state == JobState.FAILED and job.error is not None
    assert (job.error.status, job.error.code, job.error.detail) == (
        409,
        "conflict",
        "VM 'a' is busy",
    )


async def test_cancel() -> None:
    jobs = Jobs(EventBus())
    started = asyncio.Event()

    async def work(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    job = jobs.submit("stop", None, work)
    await started.wait()
    jobs.cancel(job.id)
    assert (await jobs.wait(job.id)).state == JobState.CANCELLED
    with pytest.raises(StateError, match="only running jobs cancel"):
        jobs.cancel(job.id)
    with pytest.raises(NotFoundError):
        jobs.get("nope")
    await jobs.close()
