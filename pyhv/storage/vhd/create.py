"""New fixed, dynamic and differencing VHD files.

Size semantics: current = original = the requested size rounded up to 512 bytes, geometry from
the spec's round-down algorithm, creator ``win `` (see ``structs.CREATOR_APP``), so Hyper-V,
Azure and ``qemu-img info -f vpc`` all report exactly the requested size. A fixed disk of a
whole number of MiB is therefore Azure-compatible as is.

Dynamic layout: ``[footer copy][header @512][BAT @1536][locator data…][footer]``; blocks are
appended later, their data 4 KiB-aligned as Windows does.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from pyhv.errors import UnsupportedFeature, UsageError
from pyhv.storage.fileio import create_new, os_errors, pwrite_all
from pyhv.storage.image import CreateSpec, DiskImage, DiskType, ImageFormat
from pyhv.storage.vhd import bat as batlib
from pyhv.storage.vhd.footer import Footer, pack_footer
from pyhv.storage.vhd.geometry import chs_for_size
from pyhv.storage.vhd.header import (
    DynamicHeader,
    Locator,
    locator_payloads,
    locator_space,
    pack_header,
)
from pyhv.storage.vhd.structs import (
    CREATOR_APP,
    CREATOR_HOST_OS,
    CREATOR_VERSION,
    DEFAULT_BLOCK_SIZE,
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_DYNAMIC,
    DISK_TYPE_FIXED,
    FEATURES_RESERVED,
    FILE_FORMAT_VERSION,
    FOOTER_SIZE,
    HEADER_SIZE,
    MAX_CREATE_BLOCK_SIZE,
    MAX_SIZE,
    MIN_CREATE_BLOCK_SIZE,
    NO_DATA_OFFSET,
    SECTOR_SIZE,
    VHD_EPOCH,
)

_TYPE_CODES = {
    DiskType.FIXED: DISK_TYPE_FIXED,
    DiskType.DYNAMIC: DISK_TYPE_DYNAMIC,
    DiskType.DIFFERENCING: DISK_TYPE_DIFFERENCING,
}


def vhd_timestamp(unix_seconds: float) -> int:
    return max(0, int(unix_seconds) - VHD_EPOCH) & 0xFFFFFFFF


def validate_size(size: int) -> int:
    """The size a VHD of ``size`` bytes gets (whole sectors).

    :raises UsageError: zero, negative, or beyond 2040 GiB.
    """
    if size <= 0:
        raise UsageError(f"invalid VHD size {size}: must be positive")
    rounded = batlib.align_up(size, SECTOR_SIZE)
    if rounded > MAX_SIZE:
        raise UsageError(f"VHD size {size} exceeds the VHD maximum of 2040 GiB; use .vhdx")
    return rounded


def validate_block_size(block_size: int | None) -> int:
    bs = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if bs & (bs - 1) or not MIN_CREATE_BLOCK_SIZE <= bs <= MAX_CREATE_BLOCK_SIZE:
        raise UsageError(
            f"invalid VHD block size {bs}: use a power of two from 4 KiB to 2 MiB (default 2 MiB)"
        )
    return bs


def new_footer(size: int, disk_type: DiskType, data_offset: int) -> Footer:
    return Footer(
        features=FEATURES_RESERVED,
        version=FILE_FORMAT_VERSION,
        data_offset=data_offset,
        timestamp=vhd_timestamp(time.time()),
        creator_app=CREATOR_APP,
        creator_version=CREATOR_VERSION,
        creator_os=CREATOR_HOST_OS,
        original_size=size,
        current_size=size,
        geometry=chs_for_size(size),
        disk_type=_TYPE_CODES[disk_type],
        checksum=0,
        unique_id=uuid.uuid4().bytes,
        saved_state=0,
    )


def build_dynamic(
    footer: Footer, block_size: int, parent: DiskImage | None, locators: list[tuple[bytes, bytes]]
) -> bytes:
    """The whole initial file of a dynamic or differencing disk (pure)."""
    entries = batlib.entries_for(footer.current_size, block_size)
    table_offset = FOOTER_SIZE + HEADER_SIZE
    pos = table_offset + batlib.bat_bytes(entries)
    locs: list[Locator] = []
    blobs: list[tuple[int, bytes]] = []
    for code, data in locators:
        space = locator_space(len(data))
        locs.append(Locator(code, space, len(data), pos))
        blobs.append((pos, data))
        pos += space
    header = DynamicHeader(
        table_offset=table_offset,
        max_table_entries=entries,
        block_size=block_size,
        checksum=0,
        parent_unique_id=parent.identity if parent else bytes(16),
        parent_timestamp=vhd_timestamp(parent.path.stat().st_mtime) if parent else 0,
        parent_name=parent.path.name if parent else "",
        locators=tuple(locs),
    )
    out = bytearray(pos + FOOTER_SIZE)
    packed = pack_footer(footer)
    out[0:FOOTER_SIZE] = packed
    out[FOOTER_SIZE:table_offset] = pack_header(header)
    out[table_offset : table_offset + batlib.bat_bytes(entries)] = b"\xff" * batlib.bat_bytes(
        entries
    )
    for off, data in blobs:
        out[off : off + len(data)] = data
    out[pos:] = packed
    return bytes(out)


def create_vhd(path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
    """Write a new VHD (fixed, dynamic, or differencing when ``parent`` is given).

    :raises UsageError: sizes or sector sizes VHD cannot hold.
    :raises UnsupportedFeature: a parent that is not a VHD.
    :raises ConflictError: ``path`` exists.
    """
    if spec.logical_sector_size != SECTOR_SIZE or spec.physical_sector_size not in (None, 512):
        raise UsageError("VHD supports only 512-byte sectors; use .vhdx for 4096-byte sectors")
    if parent is not None:
        if parent.format != ImageFormat.VHD:
            # a VHDX child can have a VHD or VHDX parent; a raw file can be no one's parent
            hint = (
                "convert the parent first"
                if parent.format == ImageFormat.RAW
                else "name the child .avhdx or .vhdx"
            )
            raise UnsupportedFeature(
                f"{path}: a VHD differencing disk needs a VHD parent, not {parent.format.value}; "
                + hint
            )
        disk_type, size = DiskType.DIFFERENCING, parent.size
    else:
        disk_type, size = spec.disk_type, validate_size(spec.size)
    block_size = validate_block_size(spec.block_size)
    if disk_type == DiskType.FIXED:
        footer = new_footer(size, disk_type, NO_DATA_OFFSET)
        content = b""
    else:
        footer = new_footer(size, disk_type, FOOTER_SIZE)
        locators = locator_payloads(path, parent.path) if parent is not None else []
        content = build_dynamic(footer, block_size, parent, locators)
    with os_errors(path, "create"):
        fd = create_new(path)
        try:
            if disk_type == DiskType.FIXED:  # sparse, as qemu-img makes it: the layout is fixed
                pwrite_all(fd, pack_footer(footer), size)
            else:
                pwrite_all(fd, content, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
