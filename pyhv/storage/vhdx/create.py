"""New fixed, dynamic and differencing VHDX files.

Layout pyhv writes (every offset is also recorded in the region table, as readers must take
it from there): header section, log @1 MiB (1 MiB), metadata @2 MiB (1 MiB), BAT @3 MiB
(1 MiB multiple), then payload blocks. Fixed disks get every block FULLY_PRESENT, allocated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pyhv
from pyhv.errors import UnsupportedFeature, UsageError
from pyhv.storage.image import CreateSpec, DiskImage, DiskType, ImageFormat
from pyhv.storage.vhdx import bat as batlib
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.storage.vhdx.metadata import DiskParams, pack_metadata_region
from pyhv.storage.vhdx.parent import build_locator
from pyhv.storage.vhdx.region import Region, RegionTable, pack_region_table
from pyhv.units import MiB, format_size

LOG_OFFSET = 1 * MiB
METADATA_OFFSET = 2 * MiB
METADATA_LENGTH = 1 * MiB
BAT_OFFSET = 3 * MiB


@dataclass(frozen=True)
class Layout:
    """Everything a new file holds: (offset, bytes) pieces and the final file size."""

    pieces: list[tuple[int, bytes]]
    file_size: int
    payload_start: int
    fixed: bool


def disk_params(spec: CreateSpec, parent: DiskImage | None, child: Path) -> DiskParams:
    """Validated parameters of the new disk.

    :raises UsageError: sizes or sector sizes outside what VHDX allows.
    :raises UnsupportedFeature: a raw parent.
    """
    diff = spec.disk_type is DiskType.DIFFERENCING
    if diff and parent is None:
        raise UsageError("a differencing disk needs a parent")
    if parent is not None and diff:
        if parent.format is ImageFormat.RAW:
            # a raw file has no identity to link to, so the child could never be opened
            raise UnsupportedFeature(
                f"{child}: a differencing disk needs a VHD or VHDX parent, not raw; "
                "convert the parent first"
            )
        lss, pss, size = parent.logical_sector_size, parent.physical_sector_size, parent.size
        default_block = s.DEFAULT_DIFFERENCING_BLOCK_SIZE
        try:
            page83 = uuid.UUID(parent.info().identifier)
        except ValueError:
            page83 = uuid.uuid4()
    else:
        lss = spec.logical_sector_size
        pss = spec.physical_sector_size or max(s.DEFAULT_PHYSICAL_SECTOR_SIZE, lss)
        size = spec.size
        default_block = s.DEFAULT_BLOCK_SIZE
        page83 = uuid.uuid4()
    if lss not in s.SECTOR_SIZES or pss not in s.SECTOR_SIZES:
        raise UsageError(f"sector sizes {lss}/{pss}: VHDX allows 512 or 4096")
    if pss < lss:
        raise UsageError(f"physical sector size {pss} is smaller than the logical {lss}")
    size = -(-size // lss) * lss
    if size <= 0 or size > s.MAX_VIRTUAL_DISK_SIZE:
        raise UsageError(f"size {format_size(size)} is outside what VHDX allows (1 byte – 64T)")
    block = spec.block_size or default_block
    if block < s.MIN_BLOCK_SIZE or block > s.MAX_BLOCK_SIZE or block & (block - 1):
        raise UsageError(f"block size {format_size(block)}: use a power of two from 1M to 256M")
    locator: dict[str, str] = {}
    if diff and parent is not None:
        locator = build_locator(parent.identity, Path(spec.parent or parent.path), child)
    return DiskParams(
        block_size=block,
        virtual_size=size,
        logical_sector_size=lss,
        physical_sector_size=pss,
        page83_id=page83,
        leave_block_allocated=spec.disk_type is DiskType.FIXED,
        has_parent=diff,
        parent_locator=locator,
    )


def build_layout(p: DiskParams) -> Layout:
    """Pure: the bytes of a new empty disk with parameters ``p``."""
    g = batlib.BatGeometry(p.block_size, p.logical_sector_size, p.virtual_size, p.has_parent)
    bat_length = batlib.bat_region_length(g)
    payload_start = BAT_OFFSET + bat_length
    fixed = p.leave_block_allocated and not p.has_parent
    bat = [0] * (g.entry_count if fixed else 0)
    if fixed:
        for block in range(g.payload_blocks):
            offset = payload_start + block * p.block_size
            bat[g.payload_index(block)] = batlib.pack_entry(s.PayloadState.FULLY_PRESENT, offset)
    file_size = payload_start + (g.payload_blocks * p.block_size if fixed else 0)
    regions = RegionTable(
        Region(s.BAT_REGION_GUID, BAT_OFFSET, bat_length, True),
        Region(s.METADATA_REGION_GUID, METADATA_OFFSET, METADATA_LENGTH, True),
    )
    first = hdr.Header(
        sequence_number=1,
        file_write_guid=uuid.uuid4(),
        data_write_guid=uuid.uuid4(),
        log_guid=s.NULL_GUID,
        log_length=s.DEFAULT_LOG_SIZE,
        log_offset=LOG_OFFSET,
    )
    table = pack_region_table(regions)
    pieces = [
        (0, hdr.pack_file_identifier(f"pyhv {pyhv.__version__}")),
        (s.HEADER_1_OFFSET, hdr.pack_header(first)),
        (s.HEADER_2_OFFSET, hdr.pack_header(hdr.next_header(first, new_file_write=False))),
        (s.REGION_TABLE_1_OFFSET, table),
        (s.REGION_TABLE_2_OFFSET, table),
        (METADATA_OFFSET, pack_metadata_region(p, METADATA_LENGTH)),
    ]
    if fixed:  # otherwise every entry is 0 (NOT_PRESENT), which the sparse file already reads
        pieces.append((BAT_OFFSET, batlib.pack_bat(bat)))
    return Layout(pieces, file_size, payload_start, fixed)


def create(path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
    """Write a new disk at ``path``; an existing file is never overwritten, and a failed
    create leaves no file behind.

    :raises ConflictError: the file exists. :raises UsageError: invalid parameters.
    """
    path = Path(path)
    layout = build_layout(disk_params(spec, parent, path))
    file = VhdxFile.create(path)
    try:
        for offset, data in layout.pieces:
            file.pwrite(offset, data)
        file.truncate(layout.file_size)
        if layout.fixed:
            file.preallocate(layout.payload_start, layout.file_size - layout.payload_start)
        file.sync()
    except BaseException:
        file.close()
        path.unlink(missing_ok=True)
        raise
    file.close()
