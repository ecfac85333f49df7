"""Add-VMHardDiskDrive, Remove-…, Set-VMHardDiskDrive QoS and Set-VMDvdDrive on this host.

Every change is checked on a copy of the configuration first (bad input changes nothing), then
carried out: on a running VM by its worker (hot-add, hot-remove, live QoS, medium change), and
in every case recorded in vm.json. When recording fails after the worker acted, the worker's
change is undone, so vm.json and the running VM never disagree.

Attaching refuses a file that another VM's configuration attaches, whether that VM runs or not:
two VMs writing one disk corrupt it, and Hyper-V too refuses a disk another VM holds. The file
locks of :mod:`pyhv.storage.locks` add the guarantee across processes for running VMs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pyhv.errors import (
    ConflictError,
    InvalidFormat,
    NotFoundError,
    PyhvError,
    StateError,
    UsageError,
)
from pyhv.model import (
    DiskAttachment,
    DiskStats,
    VmConfig,
    VmState,
    config_error,
    parse_vm_config,
)
from pyhv.storage import ImageInfo, open_image
from pyhv.worker import disk_edit
from pyhv.worker.local import LocalHost

SECTOR = 512
_LIVE = (VmState.RUNNING, VmState.PAUSED)
HOT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DiskRow:
    """One line of ``pyhv vm disk list``."""

    controller: int
    slot: int
    disk: DiskAttachment
    info: ImageInfo | None
    error: str | None
    stats: DiskStats | None


def check_image(path: Path, writable: bool) -> None:
    """The file is a disk image nobody else uses in a conflicting way (open, then close).

    :raises NotFoundError, InvalidFormat, CorruptImage, ParentError: as ``open_image``.
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


class LocalDisks:
    def __init__(self, host: LocalHost) -> None:
        self.host = host

    def _live(self, config: VmConfig, what: str) -> bool:
        """True when the VM runs (or is paused); refuses states where devices cannot change."""
        state = self.host.status(config).state
        if state in _LIVE:
            return True
        if state == VmState.OFF:
            return False
        raise StateError(f"cannot {what} VM '{config.name}': it is {state}")

    def _worker(self, config: VmConfig, op: str, args: dict[str, Any]) -> Any:
        return self.host.client(config).call(op, args, timeout=HOT_TIMEOUT_S)

    def _record(
        self, config: VmConfig, change: Callable[[VmConfig], Any], undo: Callable[[], Any] | None
    ) -> None:
        """Save the change in vm.json; if that fails, ``undo`` what the worker already did."""
        try:
            self.host.inventory.update(config.id, change)
        except BaseException:
            if undo is not None:
                undo()
            raise

    def add(
        self,
        name: str,
        path: Path,
        *,
        controller: int = 0,
        slot: int | None = None,
        read_only: bool = False,
        max_iops: int | None = None,
        max_bytes_per_sec: int | None = None,
    ) -> tuple[int, int]:
        """Attach a disk; hot-add when the VM runs. Returns (controller, slot).

        :raises ConfigError, ConflictError, NotFoundError, UsageError, StateError:
        """
        config = self.host.get(name)
        disk_edit.check_position(controller, slot)
        path = path.absolute()
        if slot is None:
            slot = disk_edit.free_slot(config, controller)
        try:
            disk = DiskAttachment(
                slot=slot,
                path=path,
                read_only=read_only,
                max_iops=max_iops,
                max_bytes_per_sec=max_bytes_per_sec,
            )
        except ValidationError as e:
            raise config_error(e) from None
        live = self._live(config, "attach a disk to")

        def change(c: VmConfig) -> None:
            disk_edit.add_disk(c, controller, disk, running=live)

        _preview(config, change)
        others = disk_edit.users_elsewhere(self.host.inventory.list(), config.id, path)
        if others:
            vm, c, s = others[0]
            raise ConflictError(
                f"disk {path} is attached to VM '{vm}' (SCSI {c}:{s}); remove it there first"
            )
        check_image(path, writable=not read_only)
        undo = None
        if live:
            args = {"controller": controller, **disk.model_dump(mode="json")}
            self._worker(config, "disk_add", args)

            def undo() -> None:
                self._worker(config, "disk_remove", {"controller": controller, "slot": slot})

        self._record(config, change, undo)
        return controller, slot

    def remove(self, name: str, controller: int, slot: int) -> DiskAttachment:
        """Detach a disk (its file stays); hot-remove when the VM runs."""
        config = self.host.get(name)
        disk = disk_edit.find_disk(config, controller, slot)
        if self._live(config, "remove a disk from"):
            self._worker(config, "disk_remove", {"controller": controller, "slot": slot})
        self._record(config, lambda c: disk_edit.remove_disk(c, controller, slot), None)
        return disk

    def set_qos(
        self, name: str, controller: int, slot: int, max_iops: int | None, max_bps: int | None
    ) -> None:
        """Set the disk's IOPS and bandwidth limits, live on a running VM: None keeps a limit,
        0 lifts it (Set-VMHardDiskDrive -MaximumIOPS 0)."""
        config = self.host.get(name)
        old = disk_edit.find_disk(config, controller, slot)
        if max_iops is None:
            max_iops = old.max_iops
        if max_bps is None:
            max_bps = old.max_bytes_per_sec
        max_iops, max_bps = max_iops or None, max_bps or None

        def change(c: VmConfig) -> None:
            disk_edit.set_qos(c, controller, slot, max_iops, max_bps)

        _preview(config, change)
        undo = None
        if self._live(config, "change the QoS of a disk of"):
            args = {"controller": controller, "slot": slot}
            self._worker(
                config, "disk_set_qos", {**args, "max_iops": max_iops, "max_bytes_per_sec": max_bps}
            )
            old_limits = {"max_iops": old.max_iops, "max_bytes_per_sec": old.max_bytes_per_sec}

            def undo() -> None:
                self._worker(config, "disk_set_qos", {**args, **old_limits})

        self._record(config, change, undo)

    def set_dvd(self, name: str, iso: Path | None) -> None:
        """Insert an ISO into the DVD drive (adding the drive if needed), or eject with None."""
        config = self.host.get(name)
        if iso is not None:
            iso = iso.absolute()
            if not iso.is_file():
                raise NotFoundError(f"{iso}: no such file")
        _preview(config, lambda c: disk_edit.set_dvd(c, iso))
        old = config.dvd.path if config.dvd is not None else None
        undo = None
        if self._live(config, "change the DVD of"):
            if iso is None:
                self._worker(config, "dvd_eject", {})
            else:
                self._worker(config, "dvd_set", {"path": str(iso)})

            def undo() -> None:
                if old is None:
                    self._worker(config, "dvd_eject", {})
                else:
                    self._worker(config, "dvd_set", {"path": str(old)})

        self._record(config, lambda c: disk_edit.set_dvd(c, iso), undo)

    def rows(self, name: str) -> tuple[VmConfig, list[DiskRow]]:
        """The VM's disks with what their images say and, when it runs, the provider's counters."""
        config = self.host.get(name)
        sample = self.host.sample(config)
        rows = []
        for c, disk in config.disks():
            info, error = None, None
            try:
                # Only the header is read; the VM may hold the file, so take no lock.
                with open_image(disk.path, lock=False) as image:
                    info = image.info()
            except PyhvError as e:
                error = str(e)
            stats = sample.stats.disks.get(f"{c}:{disk.slot}") if sample else None
            rows.append(DiskRow(c, disk.slot, disk, info, error, stats))
        return config, rows
