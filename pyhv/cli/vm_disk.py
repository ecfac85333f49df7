"""`pyhv vm disk …` and `pyhv vm dvd …`: a VM's virtual hard disks and DVD drive
(Add-/Remove-/Get-/Set-VMHardDiskDrive, Set-VMDvdDrive), through pyhvd. On a running VM the
changes are live. Disk and ISO files must lie inside pyhvd's storage roots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from pyhv.cli.backend import backend_of
from pyhv.errors import UsageError
from pyhv.model.limits import MAX_QOS_LIMIT
from pyhv.units import format_size, parse_size

if TYPE_CHECKING:
    from pyhv.model import DiskStats
    from pyhv.service.schemas import DiskRow, VmDisks

disk_app = typer.Typer(no_args_is_help=True)
dvd_app = typer.Typer(no_args_is_help=True)

CONTROLLER = typer.Option(0, "--controller", help="SCSI controller, 0–3.")
MAX_IOPS_HELP = "Maximum I/O operations per second (0: no limit)."
MAX_BW_HELP = "Maximum bytes per second, e.g. 50M (0: no limit)."


def _bandwidth(text: str | None) -> int | None:
    value = None if text is None else parse_size(text)
    if value is not None and value > MAX_QOS_LIMIT:
        raise UsageError(f"--max-bandwidth {text}: at most {MAX_QOS_LIMIT} bytes a second")
    return value


def _iops(value: int | None) -> int | None:
    """Checked here, as pyhvd checks it: the request's model would fail with a traceback."""
    if value is not None and value < 0:
        raise UsageError(f"--max-iops {value}: give a positive number, or 0 for no limit")
    if value is not None and value > MAX_QOS_LIMIT:
        raise UsageError(f"--max-iops {value}: at most {MAX_QOS_LIMIT}")
    return value


@disk_app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    path: Path,
    controller: int = CONTROLLER,
    slot: int | None = typer.Option(None, "--slot", help="SCSI slot 0–255 (default: first free)."),
    read_only: bool = typer.Option(False, "--read-only", help="The guest cannot write."),
    max_iops: int | None = typer.Option(None, "--max-iops", help=MAX_IOPS_HELP),
    max_bandwidth: str | None = typer.Option(None, "--max-bandwidth", help=MAX_BW_HELP),
) -> None:
    """Attach a disk image; a running VM sees it appear at once (hot-add)."""
    from pyhv.service.schemas import DiskAdd

    request = DiskAdd(
        path=str(path.resolve()),
        controller=controller,
        slot=slot,
        read_only=read_only,
        max_iops=_iops(max_iops) or None,
        max_bytes_per_sec=_bandwidth(max_bandwidth) or None,
    )
    added = backend_of(ctx).add_disk(name, request)
    Console().print(
        escape(f"attached {path} to VM '{name}' at SCSI {added.controller}:{added.slot}"),
        highlight=False,
    )


@disk_app.command("remove")
def remove(
    ctx: typer.Context,
    name: str,
    controller: int = CONTROLLER,
    slot: int = typer.Option(..., "--slot", help="SCSI slot 0–255."),
) -> None:
    """Detach a disk (the file stays); a running VM sees it disappear (hot-remove)."""
    removed = backend_of(ctx).remove_disk(name, controller, slot)
    Console().print(
        escape(f"removed {removed.disk.path} from VM '{name}' (SCSI {controller}:{slot})")
    )


@disk_app.command("set-qos")
def set_qos(
    ctx: typer.Context,
    name: str,
    controller: int = CONTROLLER,
    slot: int = typer.Option(..., "--slot", help="SCSI slot 0–255."),
    max_iops: int | None = typer.Option(None, "--max-iops", help=MAX_IOPS_HELP),
    max_bandwidth: str | None = typer.Option(None, "--max-bandwidth", help=MAX_BW_HELP),
) -> None:
    """Change a disk's Storage QoS limits; live on a running VM. Unnamed limits stay."""
    from pyhv.service.schemas import DiskQos

    if max_iops is None and max_bandwidth is None:
        # Else it would print "set" having changed nothing.
        raise UsageError(
            f"nothing to change for SCSI {controller}:{slot} of VM '{name}': "
            "give --max-iops or --max-bandwidth (0 lifts a limit)"
        )
    qos = DiskQos(max_iops=_iops(max_iops), max_bytes_per_sec=_bandwidth(max_bandwidth))
    backend_of(ctx).set_disk_qos(name, controller, slot, qos)
    Console().print(escape(f"QoS of SCSI {controller}:{slot} of VM '{name}' set"))


@disk_app.command("list")
def list_disks(
    ctx: typer.Context,
    name: str,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The VM's disks: position, image, QoS and, when it runs, I/O counters."""
    disks = backend_of(ctx).disks(name)
    if as_json:
        dvd = disks.dvd.model_dump(mode="json") if disks.dvd else None
        print(json.dumps({"disks": [row_json(r) for r in disks.disks], "dvd": dvd}, indent=2))
        return
    Console().print(disk_table(disks))


def disk_table(disks: VmDisks) -> Table:
    table = Table("SCSI", Column("Path", overflow="fold"), "Type", "Size", "Access", "QoS", "I/O")
    for r in disks.disks:
        table.add_row(*map(escape, row_cells(r)))  # paths and errors are text, not markup
    if disks.dvd is not None:
        drive = disks.dvd
        medium = str(drive.path) if drive.path else "(empty)"
        table.add_row(
            f"{drive.controller}:{drive.slot}", escape(medium), "DVD", "", "read-only", "", ""
        )
    return table


def io_cell(st: DiskStats) -> str:
    """The provider's counters, short enough for a table cell: ops, bytes (mean latency)."""
    parts = []
    for kind, ops, nbytes, ms in (
        ("r", st.read_ops, st.read_bytes, st.read_latency_ms_avg),
        ("w", st.write_ops, st.write_bytes, st.write_latency_ms_avg),
    ):
        latency = f" ({ms:.1f} ms)" if ms is not None else ""
        parts.append(f"{ops} {kind} {format_size(nbytes)}{latency}")
    return ", ".join(parts)


def row_cells(r: DiskRow) -> list[str]:
    from pyhv.cli.vm_render import disk_qos

    kind = f"{r.info.format} {r.info.disk_type}" if r.info else f"? ({r.error})"
    size = format_size(r.info.size) if r.info else "?"
    io = io_cell(r.stats) if r.stats is not None else ""
    access = "read-only" if r.disk.read_only else "read-write"
    qos = disk_qos(r.disk.max_iops, r.disk.max_bytes_per_sec) or "-"
    return [f"{r.controller}:{r.slot}", str(r.disk.path), kind, size, access, qos, io]


def row_json(r: DiskRow) -> dict[str, Any]:
    return {
        "controller": r.controller,
        "slot": r.slot,
        "path": str(r.disk.path),
        "format": str(r.info.format) if r.info else None,
        "disk_type": str(r.info.disk_type) if r.info else None,
        "size": r.info.size if r.info else None,
        "parent_path": r.info.parent_path if r.info else None,
        "error": r.error,
        "read_only": r.disk.read_only,
        "max_iops": r.disk.max_iops,
        "max_bytes_per_sec": r.disk.max_bytes_per_sec,
        "stats": r.stats.model_dump(mode="json") if r.stats else None,
    }


@dvd_app.command("set")
def dvd_set(ctx: typer.Context, name: str, iso: Path) -> None:
    """Insert an ISO image into the VM's DVD drive (adding a drive at SCSI 0:255 if none)."""
    backend_of(ctx).set_dvd(name, iso.resolve())
    Console().print(escape(f"inserted {iso} into the DVD drive of VM '{name}'"), highlight=False)


@dvd_app.command("eject")
def dvd_eject(ctx: typer.Context, name: str) -> None:
    """Eject the medium from the VM's DVD drive."""
    backend_of(ctx).set_dvd(name, None)
    Console().print(escape(f"ejected the DVD of VM '{name}'"))
