"""The control ops that change a running VM's storage: hot-add and hot-remove of disks, live
QoS limits, and the DVD drive's medium.

The caller (pyhvd's ``DiskService``) has already checked the change against the VM's
configuration and records it in vm.json; the worker keeps its own copy of the configuration
in step so later ops see the current devices.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyhv.errors import ConfigError, NotFoundError, StateError
from pyhv.model import DiskAttachment, DvdDrive
from pyhv.model.status import LIVE_STATES
from pyhv.worker import disk_edit
from pyhv.worker import qmp as q
from pyhv.worker.qemu_argv import DVD_DEVICE_ID, dvd_device, throttle_group_id

if TYPE_CHECKING:
    from pyhv.worker.worker import Worker

HOT_REMOVE_TIMEOUT_S = 30.0


def qos_limits(max_iops: int | None, max_bytes_per_sec: int | None) -> dict[str, int]:
    """The throttle group's ``limits`` value; 0 lifts a limit."""
    return {"iops-total": max_iops or 0, "bps-total": max_bytes_per_sec or 0}


class DiskOps:
    def __init__(self, worker: Worker) -> None:
        self.w = worker

    def handlers(self) -> dict[str, Any]:
        return {
            "disk_add": self.disk_add,
            "disk_remove": self.disk_remove,
            "disk_set_qos": self.disk_set_qos,
            "dvd_set": self.dvd_set,
            "dvd_eject": self.dvd_eject,
        }

    def _qmp(self, what: str) -> q.Qmp:
        if self.w.status.state not in LIVE_STATES or self.w.qmp is None:
            raise StateError(
                f"cannot {what} VM '{self.w.config.name}': it is {self.w.status.state}"
            )
        return self.w.qmp

    def _controller(self, args: dict[str, Any]) -> int:
        controller = int(args.get("controller", 0))
        if not 0 <= controller < len(self.w.config.scsi_controllers):
            raise ConfigError(f"VM '{self.w.config.name}' has no SCSI controller {controller}")
        return controller

    async def disk_add(self, args: dict[str, Any]) -> Any:
        qmp = self._qmp("hot-add a disk to")
        controller = self._controller(args)
        disk = DiskAttachment.model_validate({k: v for k, v in args.items() if k != "controller"})
        await self.w.disks.hot_add(qmp, controller, disk)
        self.w.config.scsi_controllers[controller].disks.append(disk)
        return {"controller": controller, "slot": disk.slot}

    async def disk_remove(self, args: dict[str, Any]) -> Any:
        qmp = self._qmp("hot-remove a disk from")
        controller, slot = self._controller(args), int(args["slot"])

        async def unplugged(fut: asyncio.Future[None]) -> None:
            try:
                await asyncio.wait_for(fut, HOT_REMOVE_TIMEOUT_S)
            except TimeoutError:
                raise StateError(
                    f"VM '{self.w.config.name}': QEMU did not unplug SCSI {controller}:{slot}"
                ) from None

        def deleted(device_id: str) -> asyncio.Future[None]:
            return asyncio.ensure_future(unplugged(self.w.device_deleted(device_id)))

        await self.w.disks.hot_remove(qmp, controller, slot, deleted)
        ctl = self.w.config.scsi_controllers[controller]
        ctl.disks = [d for d in ctl.disks if d.slot != slot]
        return {"controller": controller, "slot": slot}

    async def disk_set_qos(self, args: dict[str, Any]) -> Any:
        """Change the limits of the disk's throttle group; the guest keeps running."""
        qmp = self._qmp("change the QoS of a disk of")
        controller, slot = self._controller(args), int(args["slot"])
        disk = disk_edit.find_disk(self.w.config, controller, slot)
        iops, bps = args.get("max_iops"), args.get("max_bytes_per_sec")
        await qmp.execute(
            "qom-set",
            {
                "path": f"/objects/{throttle_group_id(controller, slot)}",
                "property": "limits",
                "value": qos_limits(iops, bps),
            },
        )
        disk.max_iops, disk.max_bytes_per_sec = iops, bps
        return {"controller": controller, "slot": slot}

    async def dvd_set(self, args: dict[str, Any]) -> Any:
        """Insert an ISO, plugging an empty drive first when the VM booted without one."""
        qmp = self._qmp("change the DVD of")
        iso = Path(str(args["path"]))
        if self.w.config.dvd is None:
            drive = DvdDrive()
            await qmp.execute("device_add", dvd_device(drive, None))
            self.w.config.dvd = drive
        await qmp.execute(
            "blockdev-change-medium",
            {
                "id": DVD_DEVICE_ID,
                "filename": str(iso),
                "format": "raw",
                "read-only-mode": "read-only",
            },
        )
        self.w.config.dvd.path = iso
        return {"path": str(iso)}

    async def dvd_eject(self, args: dict[str, Any]) -> Any:
        qmp = self._qmp("eject the DVD of")
        if self.w.config.dvd is None:
            raise NotFoundError(f"VM '{self.w.config.name}' has no DVD drive")
        await qmp.execute("eject", {"id": DVD_DEVICE_ID, "force": True})
        self.w.config.dvd.path = None
        return {"path": None}
