"""``/jobs``: long operations to poll or cancel."""

from __future__ import annotations

from fastapi import APIRouter, status

from pyhv.service.api.deps import Operator, Reader, Svc
from pyhv.service.jobs import Job

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", dependencies=[Reader])
async def list_jobs(svc: Svc) -> list[Job]:
    return svc.jobs.list()


@router.get("/{job_id}", dependencies=[Reader])
async def get_job(job_id: str, svc: Svc) -> Job:
    return svc.jobs.get(job_id)


@router.delete("/{job_id}", status_code=status.HTTP_202_ACCEPTED, dependencies=[Operator])
async def cancel_job(job_id: str, svc: Svc) -> Job:
    """Ask a running job to stop; it ends as Cancelled at its next step."""
    return svc.jobs.cancel(job_id)
