"""Long operations as jobs, like Hyper-V's WMI jobs: an id to poll, progress 0–100, cancellation.

A job runs as an asyncio task; its operation reports progress through :class:`JobContext` and
is cancelled at its next await. Every change of a job is published on the event bus.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel

from pyhv.errors import NotFoundError, PyhvError, StateError
from pyhv.service.error_codes import INTERNAL, status_and_code
from pyhv.service.events import EventBus

log = logging.getLogger(__name__)

KEEP_FINISHED = 500


class JobState(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class JobError(BaseModel):
    """The failure as the API would have returned it, so clients raise the same error class."""

    status: int
    code: str
    detail: str


class Job(BaseModel):
    id: str
    operation: str
    vm_id: str | None = None
    state: JobState = JobState.RUNNING
    progress: int = 0
    created: datetime
    finished: datetime | None = None
    error: JobError | None = None


class JobContext:
    """What a running operation may do with its job."""

    def __init__(self, jobs: Jobs, job: Job) -> None:
        self._jobs = jobs
        self.job = job

    def progress(self, percent: int) -> None:
        percent = max(0, min(100, int(percent)))
        if percent != self.job.progress:
            self.job.progress = percent
            self._jobs.publish(self.job)


Operation = Callable[[JobContext], Awaitable[None]]


class Jobs:
    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def publish(self, job: Job) -> None:
        self._events.publish("job", **job.model_dump(mode="json"))

    def submit(self, operation: str, vm_id: str | None, run: Operation) -> Job:
        job = Job(id=str(uuid.uuid4()), operation=operation, vm_id=vm_id, created=_now())
        self._jobs[job.id] = job
        self._forget_old()
        self._tasks[job.id] = asyncio.create_task(self._run(job, run), name=f"job-{job.id}")
        self.publish(job)
        return job

    async def _run(self, job: Job, run: Operation) -> None:
        try:
            await run(JobContext(self, job))
            job.progress, job.state = 100, JobState.COMPLETED
        except asyncio.CancelledError:
            job.state = JobState.CANCELLED
        except PyhvError as err:
            status, code = status_and_code(err)
            job.state = JobState.FAILED
            job.error = JobError(status=status, code=code, detail=str(err))
        except Exception as err:
            log.exception("job %s (%s) failed", job.id, job.operation)
            job.state = JobState.FAILED
            job.error = JobError(status=500, code=INTERNAL, detail=f"internal error: {err}")
        finally:
            job.finished = _now()
            self._tasks.pop(job.id, None)
            self.publish(job)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state != JobState.RUNNING]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def list(self) -> list[Job]:
        return list(self._jobs.values())

    def get(self, job_id: str) -> Job:
        """:raises NotFoundError: for an unknown or long-finished job."""
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NotFoundError(f"no job {job_id}: list jobs with GET /jobs") from None

    def cancel(self, job_id: str) -> Job:
        """:raises StateError: when the job has already finished."""
        job = self.get(job_id)
        task = self._tasks.get(job_id)
        if task is None:
            raise StateError(f"job {job_id} is {job.state.value.lower()}: only running jobs cancel")
        task.cancel()
        return job

    async def wait(self, job_id: str) -> Job:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait([task])
        return self.get(job_id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _now() -> datetime:
    return datetime.now(UTC)
