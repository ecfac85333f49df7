"""The VM configuration stored as ``vms/<id>/vm.json``: a pure pydantic model, no I/O.

Validators raise ``ValueError`` with the one line a user should read; ``validation.py`` turns
pydantic's ``ValidationError`` into that line as a ``ConfigError``.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pyhv.model import limits


def _check_name(name: str) -> str:
    if not name.strip():
        raise ValueError("VM name must not be empty")
    if len(name) > limits.MAX_NAME_LENGTH:
        raise ValueError(
            f"VM name is {len(name)} characters, over the limit of {limits.MAX_NAME_LENGTH}"
        )
    if "/" in name:
        raise ValueError(f"VM name {name!r} must not contain '/'")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError(f"VM name {name!r} must not contain control characters")
    return name


def _check_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"VM id {value!r} is not a UUID") from None


def _check_processors(count: int) -> int:
    if count < 1:
        raise ValueError(f"processor count {count} is below the minimum of 1")
    if count > limits.MAX_PROCESSORS:
        raise ValueError(
            f"processor count {count} exceeds the limit of {limits.MAX_PROCESSORS} per VM"
        )
    return count


def _check_memory(mib: int) -> int:
    if mib < limits.MIN_MEMORY_MIB:
        raise ValueError(
            f"startup memory {limits.describe_mib(mib)} is below the minimum of "
            f"{limits.describe_mib(limits.MIN_MEMORY_MIB)}"
        )
    if mib > limits.MAX_MEMORY_MIB:
        raise ValueError(
            f"startup memory {limits.describe_mib(mib)} exceeds the limit of "
            f"{limits.describe_mib(limits.MAX_MEMORY_MIB)} per VM"
        )
    return mib


def _check_slot(slot: int) -> int:
    if not 0 <= slot <= limits.MAX_SCSI_SLOT:
        raise ValueError(f"SCSI slot {slot} is outside 0–{limits.MAX_SCSI_SLOT}")
    return slot


def _check_controller(index: int) -> int:
    if not 0 <= index < limits.MAX_SCSI_CONTROLLERS:
        raise ValueError(
            f"SCSI controller {index} is outside 0–{limits.MAX_SCSI_CONTROLLERS - 1} "
            f"(limit of {limits.MAX_SCSI_CONTROLLERS} controllers)"
        )
    return index


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check_mac(mac: str | None) -> str | None:
    if mac is None:
        return None
    norm = mac.lower().replace("-", ":")
    if not _MAC_RE.match(norm):
        raise ValueError(f"MAC address {mac!r} is not six hex bytes (52:54:00:12:34:56)")
    if int(norm[:2], 16) & 1:
        raise ValueError(f"MAC address {mac!r} is a multicast address")
    return norm


_BOOT_RE = re.compile(r"^(dvd|disk|disk:(\d+):(\d+))$")


def _check_boot_entry(entry: str) -> str:
    if not _BOOT_RE.match(entry):
        raise ValueError(
            f"boot device {entry!r} is not one of: dvd, disk, disk:<controller>:<slot>"
        )
    return entry


def _check_absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"path {str(path)!r} is not absolute: give the full path")
    return path


# Relative paths would resolve against whichever directory the worker happens to run in.
AbsPath = Annotated[Path, AfterValidator(_check_absolute)]
Name = Annotated[str, AfterValidator(_check_name)]
VmId = Annotated[str, AfterValidator(_check_uuid)]
Slot = Annotated[int, AfterValidator(_check_slot)]
ControllerIndex = Annotated[int, AfterValidator(_check_controller)]
BootEntry = Annotated[str, AfterValidator(_check_boot_entry)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KernelBoot(_Strict):
    """Direct Linux boot: QEMU loads the kernel, so no disk needs a boot loader."""

    kernel: AbsPath
    initrd: AbsPath | None = None
    cmdline: str = ""


class DiskAttachment(_Strict):
    """A virtual hard disk in one slot (SCSI target id) of a controller, with optional QoS."""

    slot: Slot
    path: AbsPath
    read_only: bool = False
    max_iops: Annotated[int, Field(gt=0)] | None = None
    max_bytes_per_sec: Annotated[int, Field(gt=0)] | None = None


class ScsiController(_Strict):
    disks: list[DiskAttachment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_slots(self) -> ScsiController:
        seen: set[int] = set()
        for disk in self.disks:
            if disk.slot in seen:
                raise ValueError(f"SCSI slot {disk.slot} is used twice on one controller")
            seen.add(disk.slot)
        return self


class DvdDrive(_Strict):
    """A SCSI DVD drive; ``path`` is the inserted ISO, ``None`` when empty."""

    path: AbsPath | None = None
    controller: ControllerIndex = 0
    slot: Slot = limits.MAX_SCSI_SLOT


class NetworkAdapter(_Strict):
    switch: str | None = None
    mac: Annotated[str | None, AfterValidator(_check_mac)] = None


class ComPort(_Strict):
    """A serial port: ``console`` is pyhv's console (log + attach), ``pipe`` a socket of
    the user's own at ``path`` (Hyper-V's named pipe), ``none`` no port."""

    mode: Literal["none", "console", "pipe"] = "none"
    path: AbsPath | None = None

    @model_validator(mode="after")
    def _path_matches_mode(self) -> ComPort:
        if self.mode == "pipe" and self.path is None:
            raise ValueError("a COM port in pipe mode needs a socket path")
        if self.mode != "pipe" and self.path is not None:
            raise ValueError(f"a COM port in {self.mode} mode takes no path")
        return self


class AutomaticStartAction(StrEnum):
    NOTHING = "nothing"
    START_IF_RUNNING = "start_if_running"
    START = "start"


class AutomaticStopAction(StrEnum):
    SAVE = "save"
    SHUTDOWN = "shutdown"
    TURN_OFF = "turn_off"


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class VmConfig(_Strict):
    """Everything needed to (re)create the VM's QEMU process; host limits are checked apart
    (``limits.check_fits_host``) because a config may move between hosts."""

    schema_version: Literal[1] = 1
    id: VmId = Field(default_factory=_new_id)
    name: Name
    generation: Literal[1, 2] = 1
    processor_count: Annotated[int, AfterValidator(_check_processors)] = 1
    memory_startup_mib: Annotated[int, AfterValidator(_check_memory)] = 512
    # Guest RAM goes on 2 MiB pages whenever the kernel can hand them out at the start (as
    # Hyper-V backs it with large pages), else on 4 KiB ones; True makes them a requirement,
    # as libvirt's <hugepages/> or Proxmox's "hugepages: 2": a start without them is refused.
    # See pyhv.host.hugepages.
    memory_hugepages: bool = False
    boot_order: list[BootEntry] = Field(default_factory=lambda: ["dvd", "disk"])
    kernel: KernelBoot | None = None
    scsi_controllers: list[ScsiController] = Field(default_factory=lambda: [ScsiController()])
    dvd: DvdDrive | None = None
    network_adapters: list[NetworkAdapter] = Field(default_factory=list)
    com1: ComPort = Field(default_factory=lambda: ComPort(mode="console"))
    com2: ComPort = Field(default_factory=ComPort)
    notes: str = ""
    automatic_start_action: AutomaticStartAction = AutomaticStartAction.NOTHING
    automatic_stop_action: AutomaticStopAction = AutomaticStopAction.SAVE
    created: datetime = Field(default_factory=_now)

    @model_validator(mode="after")
    def _check_devices(self) -> VmConfig:
        if len(self.scsi_controllers) > limits.MAX_SCSI_CONTROLLERS:
            raise ValueError(
                f"{len(self.scsi_controllers)} SCSI controllers exceed the limit of "
                f"{limits.MAX_SCSI_CONTROLLERS}"
            )
        if len(self.network_adapters) > limits.MAX_NETWORK_ADAPTERS:
            raise ValueError(
                f"{len(self.network_adapters)} network adapters exceed the limit of "
                f"{limits.MAX_NETWORK_ADAPTERS}"
            )
        if len(set(self.boot_order)) != len(self.boot_order):
            raise ValueError(f"boot order {self.boot_order} names a device twice")
        if self.com1.mode == self.com2.mode == "console":
            raise ValueError("only one COM port can be the console; set the other to pipe or none")
        self._check_disk_paths()
        self._check_dvd()
        return self

    def _check_disk_paths(self) -> None:
        where: dict[Path, str] = {}
        for c, disk in self.disks():
            here = f"{c}:{disk.slot}"
            if disk.path in where:
                raise ValueError(f"disk {disk.path} is attached twice ({where[disk.path]}, {here})")
            where[disk.path] = here

    def _check_dvd(self) -> None:
        if self.dvd is None:
            return
        if self.dvd.controller >= len(self.scsi_controllers):
            raise ValueError(
                f"the DVD drive is on SCSI controller {self.dvd.controller}, "
                f"but the VM has {len(self.scsi_controllers)}"
            )
        taken = {d.slot for d in self.scsi_controllers[self.dvd.controller].disks}
        if self.dvd.slot in taken:
            raise ValueError(
                f"the DVD drive and a disk both use SCSI slot {self.dvd.controller}:{self.dvd.slot}"
            )

    def disks(self) -> list[tuple[int, DiskAttachment]]:
        """Every disk with its controller index, in (controller, slot) order."""
        return sorted(
            ((c, d) for c, ctl in enumerate(self.scsi_controllers) for d in ctl.disks),
            key=lambda cd: (cd[0], cd[1].slot),
        )
