"""``/vms/{vm}/disks`` and ``/vms/{vm}/dvd``: Get-/Add-/Remove-/Set-VMHardDiskDrive and
Set-VMDvdDrive. On a running VM each change is live (hot-add, hot-remove, QoS, medium).

Rights, as Hyper-V splits them: attaching and detaching disks, and their QoS, change what host
storage a VM may use, so they need ``admin`` like creating a VM; inserting or ejecting a DVD
medium is day-to-day operation (``operator``); reading needs ``reader``. Mounted before
``/vms`` so ``/vms/{vm}/{op}`` cannot take these paths.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from pyhv.model import DvdDrive
from pyhv.service.api.deps import Admin, Operator, Reader, Svc
from pyhv.service.disks import DiskService
from pyhv.service.schemas import DiskAdd, DiskQos, DiskSlot, DvdInsert, VmDisks

router = APIRouter(prefix="/vms/{vm}", tags=["disks"])


def _disks(svc: Svc) -> DiskService:
    return DiskService(svc.manager)


@router.get("/disks", dependencies=[Reader])
async def list_disks(vm: str, svc: Svc) -> VmDisks:
    """The VM's disks (with their images' headers and, while it runs, I/O counters) and DVD."""
    return await _disks(svc).list(vm)


@router.post("/disks", status_code=status.HTTP_201_CREATED, dependencies=[Admin])
async def add_disk(vm: str, body: DiskAdd, svc: Svc) -> DiskSlot:
    """Attach a disk image inside a storage root; a running VM sees it at once (hot-add)."""
    return await _disks(svc).add(vm, body)


@router.patch("/disks/{controller}/{slot}", dependencies=[Admin])
async def set_disk_qos(vm: str, controller: int, slot: int, body: DiskQos, svc: Svc) -> DiskSlot:
    """Change the disk's Storage QoS limits, live on a running VM."""
    return await _disks(svc).set_qos(vm, controller, slot, body)


@router.delete("/disks/{controller}/{slot}", dependencies=[Admin])
async def remove_disk(vm: str, controller: int, slot: int, svc: Svc) -> DiskSlot:
    """Detach a disk (the file stays); a running VM sees it disappear (hot-remove)."""
    return await _disks(svc).remove(vm, controller, slot)


@router.put("/dvd", dependencies=[Operator])
async def insert_dvd(vm: str, body: DvdInsert, svc: Svc) -> DvdDrive:
    """Insert an ISO inside a storage root (adding a drive at SCSI 0:255 if there is none)."""
    return await _disks(svc).set_dvd(vm, body.path)


@router.delete("/dvd", dependencies=[Operator])
async def eject_dvd(vm: str, svc: Svc) -> DvdDrive:
    """Eject the DVD drive's medium."""
    return await _disks(svc).set_dvd(vm, None)
