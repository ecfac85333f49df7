"""``/host``: what this host offers VMs, and where pyhvd keeps them."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

import pyhv
from pyhv.service.api.deps import Admin, Reader, Svc
from pyhv.service.host_actions import stop_all_vms
from pyhv.service.jobs import Job
from pyhv.service.schemas import HostInfo

router = APIRouter(tags=["host"])


@router.get("/host", dependencies=[Reader])
async def host_info(svc: Svc) -> HostInfo:
    manager = svc.manager
    return HostInfo(
        version=pyhv.__version__,
        home=str(manager.paths.home),
        cores=manager.host.cores,
        memory_mib=manager.host.memory_mib,
        storage_roots=[str(r) for r in manager.roots.roots],
        vms=len(manager.registry.entries()),
        running=manager.running_count(),
    )


@router.post("/host/stop-vms", status_code=status.HTTP_202_ACCEPTED, dependencies=[Admin])
async def stop_vms(svc: Svc, response: Response) -> Job:
    """Before the host shuts down: each running VM's automatic stop action, as one job."""
    job = stop_all_vms(svc.manager)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
