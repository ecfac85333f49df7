"""Convert-VHD: copy what a disk (through its whole chain) shows into a new image of any format.

The new image is built under a hidden temporary name next to the target and gets its real name
only when complete and flushed, so a failed or killed convert never leaves a half-written file
at the target path. A killed convert cannot remove its temporary file; the next convert to the
same target does.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyhv.errors import ConflictError, UsageError
from pyhv.pids import pid_exists
from pyhv.storage import create_image, format_for_name, open_image
from pyhv.storage.image import CreateSpec, DiskImage, DiskType, ExtentState, ImageFormat
from pyhv.storage.operations.files import fsync_dir, publish, remove_quietly
from pyhv.storage.operations.progress import Progress
from pyhv.storage.operations.transfer import copy_ranges


def convert_image(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    disk_type: DiskType | None = None,
    block_size: int | None = None,
    logical_sector_size: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Write ``dst`` (format from its extension) with the content ``src`` shows.

    ``disk_type`` defaults to :func:`default_type`; the logical sector size to the source's.

    :raises ConflictError: ``dst`` exists.
    :raises UsageError: a differencing target was asked for, or invalid sizes for the format.
    """
    src_path, dst_path = Path(src), Path(dst)
    if disk_type == DiskType.DIFFERENCING:
        raise UsageError("convert makes fixed or dynamic disks; use 'pyhv vhd new --parent'")
    if format_for_name(dst_path) is None:
        raise UsageError(
            f"{dst_path}: unknown extension {dst_path.suffix!r}: use .vhd, .vhdx, .img or .raw"
        )
    if dst_path.exists() or dst_path.is_symlink():
        raise ConflictError(f"{dst_path} already exists; remove it or pick another name")
    if not dst_path.parent.is_dir():
        raise UsageError(f"{dst_path}: folder {dst_path.parent} does not exist")
    with open_image(src_path) as source:
        spec = CreateSpec(
            size=source.size,
            disk_type=disk_type or default_type(source),
            block_size=block_size,
            logical_sector_size=logical_sector_size or source.logical_sector_size,
        )
        remove_stale_partials(dst_path)
        tmp = partial_name(dst_path, os.getpid())
        try:
            create_image(tmp, spec)
            with open_image(tmp, writable=True) as target:
                data = [
                    (e.offset, e.length)
                    for e in source.extents(chain=True)
                    if e.state == ExtentState.DATA
                ]
                copy_ranges(source, target, data, dst_reads_zero=True, progress=progress)
                target.flush()
            publish(tmp, dst_path)
        except BaseException:
            remove_quietly(tmp)
            raise
    fsync_dir(dst_path.parent)


def default_type(source: DiskImage) -> DiskType:
    """Keep a fixed disk fixed (Convert-VHD's rule); anything else becomes dynamic.

    A differencing chain is flattened, and a raw file has no type of its own: whether it
    happens to be sparse says nothing about what the user wants.
    """
    if source.format != ImageFormat.RAW and source.disk_type == DiskType.FIXED:
        return DiskType.FIXED
    return DiskType.DYNAMIC


def partial_name(dst: Path, pid: int) -> Path:
    """Where process ``pid`` builds ``dst``: hidden, and with ``dst``'s extension (the format)."""
    return dst.with_name(f".{dst.stem}.{pid}.partial{dst.suffix}")


def remove_stale_partials(dst: Path) -> None:
    """Delete what killed converts to ``dst`` left behind; a file whose process lives stays."""
    prefix, suffix = f".{dst.stem}.", f".partial{dst.suffix}"
    for path in dst.parent.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        pid = name[len(prefix) : -len(suffix)]
        if pid.isdigit() and not pid_exists(int(pid)):
            remove_quietly(path)
