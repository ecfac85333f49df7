"""Add-VMHardDiskDrive, Remove-…, Set-VMHardDiskDrive QoS, Set-VMDvdDrive and
Get-VMHardDiskDrive in pyhvd.

A change holds the VM (:meth:`VmManager.holding`): it waits for the VM's other configuration
changes and is refused while a job works on the VM. It is checked on a copy of the
configuration first (bad input changes nothing), then carried out in a thread: on a running VM
by its worker (hot-add, hot-remove, live QoS, medium change), and in every case recorded in
vm.json and pyhvd's view. When recording fails after the worker acted, the worker's change is
undone, so vm.json and the running VM never disagree.

Attaching refuses a file that another VM's configuration attaches, whether that VM runs or not:
two VMs writing one disk corrupt it, and Hyper-V too refuses a disk another VM holds. The file
locks of :mod:`pyhv.storage.locks` add the guarantee across processes for running VMs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from pyhv.errors import (
    InvalidFormat,
    NotFoundError,
    PyhvError,
    StateError,
    UsageError,
)
from pyhv.inventory import Inventory
from pyhv.model import DiskAttachment, DvdDrive, VmConfig, VmState, config_error, parse_vm_config
from pyhv.model.status import LIVE_STATES
from pyhv.service.schemas import DiskAdd, DiskQos, DiskRow, DiskSlot, VmDisks, VmSample
from pyhv.service.supervisor import Supervisor
from pyhv.storage import open_image
from pyhv.worker import disk_edit

if TYPE_CHECKING:
    from pyhv.service.manager import VmManager
    from pyhv.service.registry import VmEntry

SECTOR = 512
HOT_TIMEOUT_S = 60.0
T = TypeVar("T")


class DiskService:
    """The disk and DVD methods of the manager, behind ``/vms/{vm}/disks`` and ``/dvd``."""

    def __init__(self, manager: VmManager) -> None:
        self.manager = manager

    async def list(self, ref: str) -> VmDisks:
        entry = self.manager.registry.get(ref)
        sample = await self._sample(entry)
        rows = await asyncio.to_thread(read_rows, entry.config, sample)
        return VmDisks(disks=rows, dvd=entry.config.dvd)

    async def _sample(self, entry: VmEntry) -> VmSample | None:
        if entry.status.state not in LIVE_STATES:
            return None
        try:
            return await self.manager.stats(entry.config.id)
        except StateError:  # it stopped meanwhile
            return None

    async def add(self, ref: str, req: DiskAdd) -> DiskSlot:
        """Attach a disk; hot-add when the VM runs.

        :raises PermissionDenied: a path outside the storage roots.
        :raises ConfigError, ConflictError, NotFoundError, UsageError, StateError:
        """
        path = self.manager.roots.confine(req.path, "disk")
        return await self._change(ref, "attach a disk to", lambda vm: vm.add(path, req))

    async def remove(self, ref: str, controller: int, slot: int) -> DiskSlot:
        """Detach a disk (its file stays); hot-remove when the VM runs."""
        return await self._change(ref, "remove a disk from", lambda vm: vm.remove(controller, slot))

    async def set_qos(self, ref: str, controller: int, slot: int, req: DiskQos) -> DiskSlot:
        """Set the disk's IOPS and bandwidth limits, live on a running VM: None keeps a limit,
        0 lifts it."""
        return await self._change(
            ref, "change the QoS of a disk of", lambda vm: vm.set_qos(controller, slot, req)
        )

    async def set_dvd(self, ref: str, iso: str | None) -> DvdDrive:
        """Insert an ISO into the DVD drive (adding the drive if needed), or eject with None."""
        path = None if iso is None else self.manager.roots.confine(iso, "DVD image")
        return await self._change(ref, "change the DVD of", lambda vm: vm.set_dvd(path))

    async def _change(self, ref: str, what: str, act: Callable[[_HeldVm], T]) -> T:
        manager = self.manager
        async with manager.holding(ref) as entry:
            vm = _HeldVm(entry.config, _live(entry, what), manager.inventory, manager.supervisor)
            result = await asyncio.to_thread(act, vm)
            assert vm.saved is not None
            manager.registry.put(vm.saved)
        manager.events.publish("vm.changed", id=vm.saved.id, name=vm.saved.name)
        return result


def _live(entry: VmEntry, what: str) -> bool:
    """True when the VM runs (or is paused); refuses states where devices cannot change."""
    state = entry.status.state
    if state in LIVE_STATES:
        return True
    if state == VmState.OFF:
        return False
    raise StateError(f"cannot {what} VM '{entry.config.name}': it is {state}")


def check_image(path: Path, writable: bool) -> None:
    """The file is a disk image nobody else uses in a conflicting way (open, then close).

    :raises NotFoundError, CorruptImage, ParentError: as ``open_image``.
    :raises UsageError: a file that is no disk image.
    :raises ConflictError: a running VM (or a tool) holds the file or a parent of it.
    """
    try:
        with open_image(path, writable) as image:
            if image.size == 0 or image.size % SECTOR:
                raise InvalidFormat(
                    f"{path} is not a disk image: its size ({image.size} bytes) is not a "
                    f"non-zero multiple of {SECTOR}"
                )
    except InvalidFormat as e:
        raise UsageError(str(e)) from e  # the user named the wrong file: bad input


def _preview(config: VmConfig, change: Callable[[VmConfig], Any]) -> None:
    """Apply ``change`` to a copy and validate it whole, so errors come before any action."""
    copy = config.model_copy(deep=True)
    try:
        change(copy)
    except ValidationError as e:
        raise config_error(e) from None
    parse_vm_config(copy.model_dump_json())


@dataclass
class _HeldVm:
    """A held VM as a change sees it in its thread; ``saved`` is vm.json once recorded."""

    config: VmConfig
    live: bool
    inventory: Inventory
    supervisor: Supervisor
    saved: VmConfig | None = None

    def _worker(self, op: str, args: dict[str, Any]) -> Any:
        return self.supervisor.call(self.config, op, HOT_TIMEOUT_S, args)

    def _record(
        self, change: Callable[[VmConfig], Any], undo: Callable[[], Any] | None = None
    ) -> None:
        """Save the change in vm.json; if that fails, ``undo`` what the worker already did."""
        try:
            self.saved = self.inventory.update(self.config.id, change)
        except BaseException:
            if undo is not None:
                undo()
            raise

    def add(self, path: Path, req: DiskAdd) -> DiskSlot:
        config, controller, slot = self.config, req.controller, req.slot
        disk_edit.check_position(controller, slot)
        if slot is None:
            slot = disk_edit.free_slot(config, controller)
        try:
            disk = DiskAttachment(
                slot=slot,
                path=path,
                read_only=req.read_only,
                max_iops=req.max_iops or None,
                max_bytes_per_sec=req.max_bytes_per_sec or None,
            )
        except ValidationError as e:
            raise config_error(e) from None

        def change(c: VmConfig) -> None:
            disk_edit.add_disk(c, controller, disk, running=self.live)

        _preview(config, change)
        disk_edit.refuse_users_elsewhere(self.inventory.list(), config.id, path)
        check_image(path, writable=not req.read_only)
        undo = None
        if self.live:
            self._worker("disk_add", {"controller": controller, **disk.model_dump(mode="json")})

            def undo() -> None:
                self._worker("disk_remove", {"controller": controller, "slot": slot})

        self._record(change, undo)
        return DiskSlot(controller=controller, slot=slot, disk=disk)

    def remove(self, controller: int, slot: int) -> DiskSlot:
        disk = disk_edit.find_disk(self.config, controller, slot)
        if self.live:
            self._worker("disk_remove", {"controller": controller, "slot": slot})
        self._record(lambda c: disk_edit.remove_disk(c, controller, slot))
        return DiskSlot(controller=controller, slot=slot, disk=disk)

    def set_qos(self, controller: int, slot: int, req: DiskQos) -> DiskSlot:
        old = disk_edit.find_disk(self.config, controller, slot)
        max_iops = old.max_iops if req.max_iops is None else req.max_iops
        max_bps = old.max_bytes_per_sec if req.max_bytes_per_sec is None else req.max_bytes_per_sec
        max_iops, max_bps = max_iops or None, max_bps or None

        def change(c: VmConfig) -> None:
            disk_edit.set_qos(c, controller, slot, max_iops, max_bps)

        _preview(self.config, change)
        undo = None
        if self.live:
            args = {"controller": controller, "slot": slot}
            self._worker(
                "disk_set_qos", {**args, "max_iops": max_iops, "max_bytes_per_sec": max_bps}
            )
            old_limits = {"max_iops": old.max_iops, "max_bytes_per_sec": old.max_bytes_per_sec}

            def undo() -> None:
                self._worker("disk_set_qos", {**args, **old_limits})

        self._record(change, undo)
        new = old.model_copy(update={"max_iops": max_iops, "max_bytes_per_sec": max_bps})
        return DiskSlot(controller=controller, slot=slot, disk=new)

    def set_dvd(self, iso: Path | None) -> DvdDrive:
        if iso is not None and not iso.is_file():
            raise NotFoundError(f"{iso}: no such file")
        _preview(self.config, lambda c: disk_edit.set_dvd(c, iso))
        old = self.config.dvd.path if self.config.dvd is not None else None
        undo = None
        if self.live:
            self._set_medium(iso)

            def undo() -> None:
                self._set_medium(old)

        self._record(lambda c: disk_edit.set_dvd(c, iso), undo)
        assert self.saved is not None and self.saved.dvd is not None
        return self.saved.dvd

    def _set_medium(self, iso: Path | None) -> None:
        if iso is None:
            self._worker("dvd_eject", {})
        else:
            self._worker("dvd_set", {"path": str(iso)})


def read_rows(config: VmConfig, sample: VmSample | None) -> list[DiskRow]:
    """The VM's disks with what their images say and, when it runs, the provider's counters."""
    rows = []
    for c, disk in config.disks():
        row = DiskRow(controller=c, slot=disk.slot, disk=disk)
        try:
            # Only the header is read; the VM may hold the file, so take no lock.
            with open_image(disk.path, lock=False) as image:
                row.info = image.info()
        except PyhvError as e:
            row.error = str(e)
        if sample is not None:
            row.stats = sample.disks.get(f"{c}:{disk.slot}")
        rows.append(row)
    return rows
