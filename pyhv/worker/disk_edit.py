"""Changes to a VM configuration's disks and DVD drive, checked with one-line errors (no I/O).

``pyhv vm disk …`` runs each change first on a copy to refuse bad input before touching the VM,
then again inside ``Inventory.update`` so two concurrent changes cannot both take one slot.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyhv.errors import ConfigError, ConflictError, NotFoundError
from pyhv.model import DiskAttachment, DvdDrive, ScsiController, VmConfig
from pyhv.model.limits import MAX_SCSI_CONTROLLERS, MAX_SCSI_SLOT


def check_position(controller: int, slot: int | None = None) -> None:
    """:raises ConfigError: controller outside 0–3 or slot outside 0–255."""
    if not 0 <= controller < MAX_SCSI_CONTROLLERS:
        raise ConfigError(f"SCSI controller {controller} is outside 0–{MAX_SCSI_CONTROLLERS - 1}")
    if slot is not None and not 0 <= slot <= MAX_SCSI_SLOT:
        raise ConfigError(f"SCSI slot {slot} is outside 0–{MAX_SCSI_SLOT}")


def slot_user(config: VmConfig, controller: int, slot: int) -> str | None:
    """What occupies the slot: the disk's path, ``the DVD drive``, or None when free."""
    if controller < len(config.scsi_controllers):
        for disk in config.scsi_controllers[controller].disks:
            if disk.slot == slot:
                return str(disk.path)
    dvd = config.dvd
    if dvd is not None and (dvd.controller, dvd.slot) == (controller, slot):
        return "the DVD drive"
    return None


def free_slot(config: VmConfig, controller: int) -> int:
    """The lowest free slot of the controller, as Add-VMHardDiskDrive picks one.

    :raises ConflictError: every slot is taken.
    """
    for slot in range(MAX_SCSI_SLOT + 1):
        if slot_user(config, controller, slot) is None:
            return slot
    raise ConflictError(f"SCSI controller {controller} of VM '{config.name}' has no free slot")


def same_file(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def attached_at(config: VmConfig, path: Path) -> tuple[int, int] | None:
    """Where the VM has this file attached (symlinks resolved), or None."""
    for c, disk in config.disks():
        if same_file(disk.path, path):
            return c, disk.slot
    return None


def add_disk(config: VmConfig, controller: int, disk: DiskAttachment, *, running: bool) -> None:
    """Attach ``disk``; an Off VM gets the missing controllers up to ``controller``.

    :raises ConfigError: bad position, or a new controller on a running VM.
    :raises ConflictError: the slot is taken, or the file is already attached to this VM.
    """
    check_position(controller, disk.slot)
    where = attached_at(config, disk.path)
    if where is not None:
        c, s = where
        raise ConflictError(
            f"disk {disk.path} is already attached to VM '{config.name}' (SCSI {c}:{s})"
        )
    user = slot_user(config, controller, disk.slot)
    if user is not None:
        raise ConflictError(
            f"SCSI slot {controller}:{disk.slot} of VM '{config.name}' is taken by {user}"
        )
    if controller >= len(config.scsi_controllers):
        if running:
            raise ConfigError(
                f"VM '{config.name}' has {len(config.scsi_controllers)} SCSI controller(s); "
                f"controller {controller} can be added only while it is Off"
            )
        while len(config.scsi_controllers) <= controller:
            config.scsi_controllers.append(ScsiController())
    config.scsi_controllers[controller].disks.append(disk)


def find_disk(config: VmConfig, controller: int, slot: int) -> DiskAttachment:
    """:raises ConfigError, NotFoundError: bad position or no disk there."""
    check_position(controller, slot)
    if controller < len(config.scsi_controllers):
        for disk in config.scsi_controllers[controller].disks:
            if disk.slot == slot:
                return disk
    raise NotFoundError(f"VM '{config.name}' has no disk in SCSI slot {controller}:{slot}")


def remove_disk(config: VmConfig, controller: int, slot: int) -> DiskAttachment:
    disk = find_disk(config, controller, slot)
    ctl = config.scsi_controllers[controller]
    ctl.disks = [d for d in ctl.disks if d.slot != slot]
    return disk


def set_qos(
    config: VmConfig, controller: int, slot: int, max_iops: int | None, max_bps: int | None
) -> None:
    disk = find_disk(config, controller, slot)
    disk.max_iops, disk.max_bytes_per_sec = max_iops, max_bps


def set_dvd(config: VmConfig, iso: Path | None) -> None:
    """Insert (or with None eject) the medium; inserting into a VM without a drive adds one
    at its default place (SCSI 0:255).

    :raises NotFoundError: ejecting from a VM without a DVD drive.
    """
    if config.dvd is None:
        if iso is None:
            raise NotFoundError(f"VM '{config.name}' has no DVD drive")
        config.dvd = DvdDrive(path=iso)
    else:
        config.dvd = config.dvd.model_copy(update={"path": iso})


def users_elsewhere(configs: list[VmConfig], vm_id: str, path: Path) -> list[tuple[str, int, int]]:
    """Other VMs whose configuration attaches this file: (name, controller, slot)."""
    out = []
    for other in configs:
        if other.id == vm_id:
            continue
        where = attached_at(other, path)
        if where is not None:
            out.append((other.name, *where))
    return out


def refuse_users_elsewhere(configs: list[VmConfig], vm_id: str, path: Path) -> None:
    """Two VMs writing one disk corrupt it, whether or not the other runs now.

    :raises ConflictError: another VM's configuration attaches ``path``, naming where.
    """
    users = users_elsewhere(configs, vm_id, path)
    if users:
        vm, c, s = users[0]
        raise ConflictError(
            f"disk {path} is attached to VM '{vm}' (SCSI {c}:{s}); remove it there first"
        )
