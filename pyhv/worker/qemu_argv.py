"""The QEMU command line of a VM, as a pure function of its configuration.

Devices are described as option dicts first: the same dicts render to ``-device``/``-blockdev``
arguments here and go to QMP ``device_add``/``blockdev-add``/``object-add`` for hot-add, so a
hot-added disk is wired exactly like a cold-plugged one. Restoring a saved VM needs the same
device set, so equal inputs always give equal argv.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhv.model import ComPort, DiskAttachment, DvdDrive, VmConfig
from pyhv.paths import RuntimeLayout
from pyhv.worker.firmware import Firmware

QEMU_BINARY = "qemu-system-x86_64"
NBD_RECONNECT_DELAY_S = 10  # QEMU retries the provider this long after it goes away
HOTPLUG_ROOT_PORTS = 4  # free PCIe slots for hot-added NICs and controllers
GUEST_AGENT_PORT = "org.qemu.guest_agent.0"
DVD_DEVICE_ID = "dvd0"
_CPU_MODEL = {"tcg": "max", "kvm": "host"}
# The guest's RAM. Not preallocated at start (that would add ~0.35 s to every start of a
# 512 MiB guest here); a checkpoint populates it at run time (pyhv.worker.memory_save).
MEMORY_BACKEND_ID = "mem"
# QEMU names the memfd after the backend type: /proc/<pid>/fd shows "/memfd:<this> (deleted)".
MEMFD_NAME = "memory-backend-memfd"

Options = dict[str, Any]


@dataclass(frozen=True)
class DiskWiring:
    """One disk as the storage provider exports it on the VM's NBD socket."""

    controller: int
    slot: int
    export: str
    read_only: bool = False


@dataclass(frozen=True)
class DiskPlan:
    """What QEMU needs for one disk, in creation order (remove in reverse)."""

    objects: list[Options]
    blockdevs: list[Options]
    device: Options

    @property
    def node(self) -> str:
        """The block node the device reads and writes through."""
        return str(self.device["drive"])


def escape(value: str) -> str:
    """QEMU's option syntax doubles commas inside a value."""
    return value.replace(",", ",,")


def render(options: Mapping[str, Any], implied: str | None = None) -> str:
    """``{"driver": "nbd", "server": {"type": "unix"}}`` → ``driver=nbd,server.type=unix``;
    the ``implied`` key's value comes first without its name (``scsi-hd,bus=…``)."""
    parts = [escape(str(options[implied]))] if implied else []
    parts += [f"{k}={v}" for k, v in _flatten(options) if k != implied]
    return ",".join(parts)


def _flatten(options: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in options.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, bool):
            yield f"{prefix}{key}", "on" if value else "off"
        else:
            yield f"{prefix}{key}", escape(str(value))


def disk_node(controller: int, slot: int) -> str:
    return f"disk{controller}-{slot}"


def disk_device_id(controller: int, slot: int) -> str:
    return f"hd{controller}-{slot}"


def plan_disk(
    wiring: DiskWiring,
    nbd_socket: Path,
    qos: DiskAttachment | None = None,
    bootindex: int | None = None,
) -> DiskPlan:
    """NBD client node, a throttle filter on top, and the ``scsi-hd`` (scsi-id = slot) on its
    controller. Every disk gets its own throttle group, limits or not, so QoS can be set on a
    running VM with ``qom-set`` (a filter cannot be inserted under a running device)."""
    c, s = wiring.controller, wiring.slot
    top = disk_node(c, s)
    nbd: Options = {
        "driver": "nbd",
        "node-name": f"{top}-nbd",
        "server": {"type": "unix", "path": str(nbd_socket)},
        "export": wiring.export,
        "reconnect-delay": NBD_RECONNECT_DELAY_S,
        "read-only": wiring.read_only,
        "discard": "unmap",
    }
    group = throttle_group_id(c, s)
    throttle: Options = {
        "driver": "throttle",
        "node-name": top,
        "throttle-group": group,
        "file": nbd["node-name"],
        "read-only": wiring.read_only,
        "discard": "unmap",
    }
    device: Options = {
        "driver": "scsi-hd",
        "id": disk_device_id(c, s),
        "bus": f"scsi{c}.0",
        "scsi-id": s,
        "lun": 0,
        "drive": top,
    }
    if bootindex is not None:
        device["bootindex"] = bootindex
    group_object = {"qom-type": "throttle-group", "id": group, **throttle_limits(qos)}
    return DiskPlan(objects=[group_object], blockdevs=[nbd, throttle], device=device)


def throttle_group_id(controller: int, slot: int) -> str:
    return f"tg{controller}-{slot}"


def throttle_limits(qos: DiskAttachment | None) -> Options:
    """The throttle group's ``x-`` properties for the disk's limits; none means unlimited."""
    if qos is None:
        return {}
    limits: Options = {}
    if qos.max_iops:
        limits["x-iops-total"] = qos.max_iops
    if qos.max_bytes_per_sec:
        limits["x-bps-total"] = qos.max_bytes_per_sec
    return limits


def boot_indexes(config: VmConfig) -> dict[str, int]:
    """Device id → bootindex, following ``config.boot_order``; entries naming a device the
    VM does not have are skipped. Index 0 stays free for QEMU's direct kernel boot."""
    devices: dict[str, str] = {}
    if config.dvd is not None:
        devices["dvd"] = DVD_DEVICE_ID
    disks = config.disks()
    if disks:
        c, first = disks[0]
        devices["disk"] = disk_device_id(c, first.slot)
    for c, d in disks:
        devices[f"disk:{c}:{d.slot}"] = disk_device_id(c, d.slot)
    order: dict[str, int] = {}
    for entry in config.boot_order:
        dev = devices.get(entry)
        if dev is not None and dev not in order:
            order[dev] = len(order) + 1
    return order


def build_qemu_argv(
    config: VmConfig,
    run: RuntimeLayout,
    accel: str,
    firmware: Firmware,
    *,
    incoming: str | None = None,
    disks: Sequence[DiskWiring] = (),
    start_paused: bool = False,
    memory_file: str | None = None,
    large_pages: bool = False,
    qemu: str = QEMU_BINARY,
) -> list[str]:
    """The full argv (binary first) of the VM's QEMU process.

    :param accel: ``tcg`` or ``kvm``, as ``pyhv.host.accel.choose_accelerator`` decided.
    :param incoming: ``defer`` (or a URI) when restoring a saved state.
    :param disks: the disks the storage provider exports, each on ``run.nbd``.
    :param start_paused: ``-S``, so the worker can attach before the guest runs.
    :param memory_file: map the guest's RAM from this file (a previous QEMU's memfd, reached
        through ``/proc``) instead of a new memfd: same backend id and size, so a migration
        stream of either loads into the other, and the pages are already there. They are
        not preallocated: mapping all 512 MiB at start took QEMU ~0.1 s here, more than the
        page faults cost while the stream loads.
    :param large_pages: the guest's RAM on 2 MiB pages (``pyhv.host.hugepages.large_pages``
        decides; ignored with ``memory_file``, whose own page size holds).
    :raises ValueError: for an unknown accelerator or a disk on a missing controller.
    """
    if accel not in _CPU_MODEL:
        raise ValueError(f"unknown accelerator {accel!r}")
    argv = [qemu, "-name", f"guest={escape(config.name)},debug-threads=on", "-uuid", config.id]
    argv += _machine(config, accel, firmware, memory_file, large_pages)
    argv += ["-nodefaults", "-no-user-config", "-display", "none"]
    argv += _sockets(run)
    argv += _com_ports(config, run)
    argv += _integration_devices(run)
    argv += _storage(config, run, disks)
    argv += _kernel(config)
    if start_paused:
        argv.append("-S")
    if incoming is not None:
        argv += ["-incoming", incoming]
    return argv


def _machine(
    config: VmConfig, accel: str, firmware: Firmware, memory_file: str | None, large_pages: bool
) -> list[str]:
    mib = config.memory_startup_mib
    machine: Options = {"type": "q35", "memory-backend": MEMORY_BACKEND_ID}
    fw: list[str] = []
    if firmware.bios is not None:
        fw += ["-bios", str(firmware.bios)]
    if firmware.code is not None and firmware.vars is not None:
        machine |= {"pflash0": "fw-code", "pflash1": "fw-vars"}
        fw += [
            "-blockdev",
            render(_file_node("fw-code", firmware.code, read_only=True)),
            "-blockdev",
            render(_file_node("fw-vars", firmware.vars, read_only=False)),
        ]
    memory: Options = {
        "qom-type": MEMFD_NAME,
        "id": MEMORY_BACKEND_ID,
        "size": f"{mib}M",
        "share": True,
    }
    if large_pages:
        memory |= {"hugetlb": True, "hugetlbsize": "2M"}
    if memory_file is not None:
        # A file backend finds the page size from the file itself (a hugetlb memfd is on
        # hugetlbfs), so the hugetlb options are the memfd backend's alone.
        memory = {"qom-type": "memory-backend-file"} | {
            k: v for k, v in memory.items() if k in ("id", "size", "share")
        }
        memory["mem-path"] = memory_file
    return [
        "-machine",
        render(machine, "type"),
        "-accel",
        accel,
        "-cpu",
        _CPU_MODEL[accel],
        "-smp",
        str(config.processor_count),
        "-m",
        f"{mib}M",
        "-object",
        render(memory, "qom-type"),
        *fw,
    ]


def _file_node(name: str, path: Path, *, read_only: bool) -> Options:
    return {"driver": "file", "node-name": name, "filename": str(path), "read-only": read_only}


def _socket_chardev(chardev_id: str, path: Path) -> list[str]:
    options = {"backend": "socket", "id": chardev_id, "path": str(path)}
    return ["-chardev", render(options | {"server": True, "wait": False}, "backend")]


def _sockets(run: RuntimeLayout) -> list[str]:
    return [*_socket_chardev("qmp", run.qmp), "-mon", "chardev=qmp,mode=control"]


def _com_ports(config: VmConfig, run: RuntimeLayout) -> list[str]:
    argv: list[str] = []
    for index, port in enumerate((config.com1, config.com2)):
        path = _com_path(port, run)
        if path is None:
            continue
        name = f"com{index + 1}"
        argv += _socket_chardev(name, path)
        argv += ["-device", f"isa-serial,chardev={name},index={index}"]
    return argv


def _com_path(port: ComPort, run: RuntimeLayout) -> Path | None:
    if port.mode == "console":
        return run.serial
    return port.path


def _integration_devices(run: RuntimeLayout) -> list[str]:
    """Guest agent channel, memory balloon and spare PCIe ports for hot-add."""
    argv = ["-device", "virtio-serial-pci,id=vserial0"]
    argv += _socket_chardev("qga0", run.qga)
    argv += [
        "-device",
        f"virtserialport,bus=vserial0.0,nr=1,chardev=qga0,name={GUEST_AGENT_PORT}",
        "-device",
        "virtio-balloon-pci,id=balloon0",
    ]
    for i in range(HOTPLUG_ROOT_PORTS):
        argv += ["-device", f"pcie-root-port,id=hotplug{i},bus=pcie.0,chassis={i + 1}"]
    return argv


def _storage(config: VmConfig, run: RuntimeLayout, disks: Sequence[DiskWiring]) -> list[str]:
    argv: list[str] = []
    for c in range(len(config.scsi_controllers)):
        argv += ["-device", f"virtio-scsi-pci,id=scsi{c}"]
    boot = boot_indexes(config)
    attached = {(c, d.slot): d for c, d in config.disks()}
    for wiring in disks:
        if wiring.controller >= len(config.scsi_controllers):
            raise ValueError(f"disk on SCSI controller {wiring.controller}, which the VM lacks")
        qos = attached.get((wiring.controller, wiring.slot))
        dev_id = disk_device_id(wiring.controller, wiring.slot)
        plan = plan_disk(wiring, run.nbd, qos, boot.get(dev_id))
        argv += [a for o in plan.objects for a in ("-object", render(o, "qom-type"))]
        argv += [a for b in plan.blockdevs for a in ("-blockdev", render(b))]
        argv += ["-device", render(plan.device, "driver")]
    if config.dvd is not None:
        argv += _dvd(config.dvd, boot.get(DVD_DEVICE_ID))
    return argv


def dvd_device(dvd: DvdDrive, bootindex: int | None, drive: str | None = None) -> Options:
    """The ``scsi-cd``; without ``drive`` it is empty until QMP's ``blockdev-change-medium``."""
    device: Options = {
        "driver": "scsi-cd",
        "id": DVD_DEVICE_ID,
        "bus": f"scsi{dvd.controller}.0",
        "scsi-id": dvd.slot,
        "lun": 0,
    }
    if drive is not None:
        device["drive"] = drive
    if bootindex is not None:
        device["bootindex"] = bootindex
    return device


def _dvd(dvd: DvdDrive, bootindex: int | None) -> list[str]:
    argv: list[str] = []
    drive = None
    if dvd.path is not None:
        media = {
            "driver": "raw",
            "node-name": "dvd0-media",
            "read-only": True,
            "file": {"driver": "file", "filename": str(dvd.path)},
        }
        argv += ["-blockdev", render(media)]
        drive = "dvd0-media"
    return [*argv, "-device", render(dvd_device(dvd, bootindex, drive), "driver")]


def _kernel(config: VmConfig) -> list[str]:
    if config.kernel is None:
        return []
    argv = ["-kernel", str(config.kernel.kernel)]
    if config.kernel.initrd is not None:
        argv += ["-initrd", str(config.kernel.initrd)]
    if config.kernel.cmdline:
        argv += ["-append", config.kernel.cmdline]
    return argv
