"""Export-VM, Import-VM and Compare-VM: ``/vms/{id}/export``, ``/vms/import``,
``/vms/import/report``. Mounted before ``/vms`` so ``/vms/{vm}/{op}`` cannot take them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from pyhv.service.api.deps import Admin, Svc
from pyhv.service.jobs import Job
from pyhv.service.schemas import CompatibilityReport, ExportRequest, ImportRequest

router = APIRouter(prefix="/vms", tags=["export and import"])

_JOB: dict[int | str, dict[str, Any]] = {
    202: {"headers": {"Location": {"description": "the job, /jobs/{id}"}}}
}


@router.post("/import/report", dependencies=[Admin])
async def compare_vm(body: ImportRequest, svc: Svc) -> CompatibilityReport:
    """What would keep this export from importing or starting here (Compare-VM)."""
    return await svc.porter.report(body)


@router.post("/import", status_code=status.HTTP_202_ACCEPTED, dependencies=[Admin], responses=_JOB)
async def import_vm(body: ImportRequest, svc: Svc, response: Response) -> Job:
    """Register an export in place, copy it, or copy it with a new id (Import-VM)."""
    job = await svc.porter.import_(body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.post(
    "/{vm}/export", status_code=status.HTTP_202_ACCEPTED, dependencies=[Admin], responses=_JOB
)
async def export_vm(vm: str, body: ExportRequest, svc: Svc, response: Response) -> Job:
    """Write the VM (configuration, disks with their chains, saved state) to a folder."""
    job = await svc.porter.export(vm, body)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
