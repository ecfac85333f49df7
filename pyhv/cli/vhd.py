"""`pyhv vhd` commands: Hyper-V's disk cmdlets (New-VHD, Get-VHD, Test-VHD, …) for Linux.

Each command validates its arguments, calls one function of :mod:`pyhv.storage` or
:mod:`pyhv.storage.operations`, and renders the result; errors travel up as ``PyhvError`` and
``pyhv.cli.app.main`` turns them into one line and an exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pyhv.errors import ParentError, UsageError
from pyhv.storage import CreateSpec, DiskType, ImageInfo, create_image, open_image, open_layer
from pyhv.storage.operations import (
    check_chain,
    compact_image,
    convert_image,
    merge_image,
    resize_image,
    set_parent,
)
from pyhv.storage.operations.check import unresolved
from pyhv.storage.operations.progress import Progress as ProgressCallback
from pyhv.units import format_size, parse_size

app = typer.Typer(no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

SECTOR_SIZES = (512, 4096)


# -- argument helpers (pure) ---------------------------------------------------------------------
def choose_type(fixed: bool, dynamic: bool) -> DiskType | None:
    if fixed and dynamic:
        raise UsageError("choose one of --fixed and --dynamic, not both")
    if fixed:
        return DiskType.FIXED
    if dynamic:
        return DiskType.DYNAMIC
    return None


def parse_positive_size(text: str, what: str) -> int:
    size = parse_size(text)
    if size <= 0:
        raise UsageError(f"invalid {what} {text!r}: must be larger than 0")
    return size


def check_sector_size(value: int | None, option: str) -> int | None:
    if value is not None and value not in SECTOR_SIZES:
        raise UsageError(f"invalid {option} {value}: use 512 or 4096")
    return value


def new_spec(
    size: str | None,
    disk_type: DiskType | None,
    parent: Path | None,
    block_size: str | None,
    logical_sector: int | None,
    physical_sector: int | None,
) -> CreateSpec:
    """The ``CreateSpec`` of ``pyhv vhd new`` from its raw options, refusing contradictions."""
    lss = check_sector_size(logical_sector, "--logical-sector") or 512
    pss = check_sector_size(physical_sector, "--physical-sector")
    if pss is not None and pss < lss:
        raise UsageError(f"--physical-sector {pss} is smaller than --logical-sector {lss}")
    bs = parse_positive_size(block_size, "block size") if block_size is not None else None
    if parent is not None:
        if size is not None:
            raise UsageError("a differencing disk takes its size from the parent: drop --size")
        if disk_type is not None:
            raise UsageError("--parent makes a differencing disk: drop --fixed/--dynamic")
        return CreateSpec(
            size=0,
            disk_type=DiskType.DIFFERENCING,
            block_size=bs,
            logical_sector_size=lss,
            physical_sector_size=pss,
            parent=str(parent),
        )
    if size is None:
        raise UsageError("--size is required (e.g. --size 10G), unless --parent is given")
    n = parse_positive_size(size, "size")
    if n % lss:
        raise UsageError(f"invalid size {size!r}: not a multiple of the {lss}-byte sector")
    return CreateSpec(
        size=n,
        disk_type=disk_type or DiskType.DYNAMIC,
        block_size=bs,
        logical_sector_size=lss,
        physical_sector_size=pss,
    )


# -- rendering (pure) ---------------------------------------------------------------------------
def info_record(info: ImageInfo) -> dict[str, Any]:
    """One layer as JSON-ready data, with Get-VHD's field names in snake case."""
    d = asdict(info)
    d["format"] = info.format.value
    d["type"] = info.disk_type.value
    d["virtual_size"] = d.pop("size")
    del d["disk_type"]
    if not d["extra"]:
        del d["extra"]
    return d


def info_document(chain: list[ImageInfo], chain_error: str | None = None) -> dict[str, Any]:
    """``info --json``: the disk's own fields, plus every layer from the disk to its base."""
    doc = info_record(chain[0])
    doc["chain"] = [info_record(i) for i in chain]
    if chain_error is not None:
        doc["chain_error"] = chain_error
    return doc


def info_table(doc: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    rows = [
        ("Path", doc["path"]),
        ("Format", doc["format"].upper()),
        ("Type", doc["type"]),
        ("Virtual size", _size(doc["virtual_size"])),
        ("File size", _size(doc["file_size"])),
        ("Minimum size", _size(doc["minimum_size"])),
        ("Allocated", _size(doc["allocated_bytes"])),
        ("Block size", _size(doc["block_size"]) if doc["block_size"] else "-"),
        ("Logical sector", str(doc["logical_sector_size"])),
        ("Physical sector", str(doc["physical_sector_size"])),
        ("Identifier", doc["identifier"] or "-"),
        ("Parent", doc["parent_path"] or "-"),
    ]
    for depth, layer in enumerate(doc["chain"][1:], start=1):
        rows.append((f"Chain {depth}", f"{layer['path']} ({layer['format']}, {layer['type']})"))
    if "chain_error" in doc:
        rows.append(("Chain error", doc["chain_error"]))
    for key, value in rows:
        table.add_row(key, Text(value))  # Text: paths may contain rich markup such as "[1]"
    return table


def _size(n: int) -> str:
    return f"{format_size(n)} ({n} bytes)"


# -- progress -----------------------------------------------------------------------------------
@contextmanager
def progress_bar(label: str, *, in_bytes: bool = True) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr (nothing when stderr is not a terminal).

    ``in_bytes=False`` for callers whose counts are not bytes (a format's compaction counts
    blocks): they get a percentage.
    """
    amount = DownloadColumn(binary_units=True) if in_bytes else TaskProgressColumn()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        amount,
        TimeRemainingColumn(),
        console=_err,
        transient=True,
        disable=not _err.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


# -- commands -----------------------------------------------------------------------------------
@app.command()
def new(
    path: Path = typer.Argument(..., help="New file; .vhd/.avhd, .vhdx/.avhdx or .img/.raw."),
    size: str | None = typer.Option(None, "--size", help="Virtual size: 10G, 512M, 1T or bytes."),
    fixed: bool = typer.Option(False, "--fixed", help="Allocate the whole size now."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Grow on demand (default)."),
    parent: Path | None = typer.Option(
        None, "--parent", help="Make a differencing disk of PARENT."
    ),
    block_size: str | None = typer.Option(None, "--block-size", help="Allocation unit (e.g. 2M)."),
    logical_sector: int | None = typer.Option(None, "--logical-sector", help="512 or 4096."),
    physical_sector: int | None = typer.Option(None, "--physical-sector", help="512 or 4096."),
) -> None:
    """Create a virtual hard disk (New-VHD)."""
    spec = new_spec(
        size,
        choose_type(fixed, dynamic),
        parent,
        block_size,
        logical_sector,
        physical_sector,
    )
    if spec.disk_type == DiskType.FIXED:
        with _err.status(f"Allocating {format_size(spec.size)} for {path}"):
            create_image(path, spec)
    else:
        create_image(path, spec)
    with open_image(path) as image:
        print(f"{path}: {image.disk_type.value} {image.format.value}, {_size(image.size)}")


@app.command()
def info(
    path: Path = typer.Argument(..., help="Disk to describe."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a disk's properties and its parent chain (Get-VHD).

    When the chain is broken the disk's own fields are still shown, then the error (exit 1).
    """
    broken: ParentError | None = None
    try:
        with open_image(path) as image:
            chain = [layer.info() for layer in image.chain()]
    except ParentError as e:
        broken = e
        with open_layer(path) as layer:
            chain = [layer.info()]
    doc = info_document(chain, str(broken) if broken else None)
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        _out.print(info_table(doc))
    if broken is not None:
        raise broken


@app.command()
def check(
    path: Path = typer.Argument(..., help="Disk to check, with all its parents."),
    repair: bool = typer.Option(False, "--repair", help="Fix what can be fixed in place."),
) -> None:
    """Check a disk and its whole parent chain (Test-VHD); exit 1 with one line per problem."""
    problems = check_chain(path, repair=repair)
    for line in problems:
        print(line)
    if unresolved(problems):
        raise typer.Exit(1)
    print(f"{path}: no problems found" if not problems else f"{path}: repaired")


@app.command()
def resize(
    path: Path = typer.Argument(..., help="Disk to resize."),
    size: str = typer.Option(..., "--size", help="New virtual size: 10G, 512M, 1T or bytes."),
) -> None:
    """Grow a disk, or shrink a VHDX (Resize-VHD)."""
    new_size = parse_positive_size(size, "size")
    old = resize_image(path, new_size)
    with open_layer(path, lock=False) as layer:  # formats round up to whole sectors: say so
        new_size = layer.size
    print(f"{path}: virtual size {_size(old)} -> {_size(new_size)}")


@app.command()
def compact(
    path: Path = typer.Argument(..., help="Dynamic or differencing disk, or raw image."),
) -> None:
    """Give back the space of blocks that hold only zeros (Optimize-VHD).

    A fixed VHD or VHDX is refused, as by Optimize-VHD; a raw image gets holes punched.
    """
    with progress_bar("Compacting", in_bytes=False) as progress:
        freed = compact_image(path, progress)
    print(f"{path}: gave back {format_size(freed)}; file size {format_size(path.stat().st_size)}")


@app.command()
def merge(
    child: Path = typer.Argument(..., help="Differencing disk to merge."),
    into: Path | None = typer.Option(
        None, "--into", help="Ancestor to merge into (default: parent)."
    ),
) -> None:
    """Fold a differencing disk, and the disks between, into an ancestor (Merge-VHD)."""
    with progress_bar("Merging") as progress:
        target = merge_image(child, into, progress)
    print(f"{child}: merged into {target}")


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Disk to read (its whole chain)."),
    dst: Path = typer.Argument(..., help="New file; the format comes from its extension."),
    fixed: bool = typer.Option(False, "--fixed", help="Make a fixed disk."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Make a dynamic disk."),
    block_size: str | None = typer.Option(None, "--block-size", help="Allocation unit (e.g. 2M)."),
    delete_source: bool = typer.Option(False, "--delete-source", help="Remove SRC when done."),
) -> None:
    """Copy a disk into a new format or type, flattening its chain (Convert-VHD)."""
    disk_type = choose_type(fixed, dynamic)
    bs = parse_positive_size(block_size, "block size") if block_size is not None else None
    with progress_bar("Converting") as progress:
        convert_image(src, dst, disk_type=disk_type, block_size=bs, progress=progress)
    if delete_source:
        src.unlink()
    print(f"{src}: converted to {dst}" + (" (source deleted)" if delete_source else ""))


@app.command("set-parent")
def set_parent_command(
    child: Path = typer.Argument(..., help="Differencing disk whose parent moved."),
    parent: Path = typer.Option(..., "--parent", help="The parent's new path."),
) -> None:
    """Point a differencing disk at its moved parent, checking identity (Set-VHD -ParentPath)."""
    set_parent(child, parent)
    print(f"{child}: parent set to {parent}")
