"""``/host``: what this host offers VMs, and where pyhvd keeps them."""

from __future__ import annotations

from fastapi import APIRouter

import pyhv
from pyhv.service.api.deps import Reader, Svc
from pyhv.service.schemas import HostInfo

router = APIRouter(tags=["host"])


@router.get("/host", dependencies=[Reader])
def host_info(svc: Svc) -> HostInfo:
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
