"""Load and validate what an open VHDX is made of: region table, metadata, BAT.

Everything is read through the :class:`~.handle.VhdxFile` after the log was replayed, and
checked before use: bounds against the file size, regions and blocks against each other.
# Ref: [MS-VHDX] §2.2.3, §2.5, §2.6.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyhv.errors import CorruptImage
from pyhv.storage.vhdx import bat as batlib
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.storage.vhdx.header import Header
from pyhv.storage.vhdx.metadata import (
    DiskParams,
    MetadataItem,
    parse_disk_params,
    parse_metadata_table,
)
from pyhv.storage.vhdx.region import RegionTable, check_log_placement, parse_region_table
from pyhv.units import MiB


@dataclass
class Layout:
    regions: RegionTable
    metadata: bytes  # the whole metadata region
    items: list[MetadataItem]
    params: DiskParams
    geometry: batlib.BatGeometry
    bat: list[int]
    reserved: list[tuple[int, int, str]]  # (start, end, name) of non-block structures
    alloc_end: int  # 1 MiB aligned offset where the next block goes

    def set_metadata(self, region: bytes) -> None:
        self.metadata = region
        self.items = parse_metadata_table(region, self.regions.metadata.length)
        self.params = parse_disk_params(region, self.items)

    def entry_length(self, index: int, entry: int) -> int:
        """File bytes BAT entry ``index`` holds (0 when it holds none)."""
        state = entry & s.BAT_STATE_MASK
        if self.geometry.is_bitmap_index(index):
            return s.SECTOR_BITMAP_BLOCK_SIZE if state == s.BitmapState.PRESENT else 0
        return self.geometry.block_size if state in batlib.PRESENT_STATES else 0


def read_region_table(file: VhdxFile) -> RegionTable:
    """Table 1, or table 2 when table 1 is damaged.

    :raises CorruptImage: both damaged.
    """
    errors: list[str] = []
    for off in s.REGION_TABLE_OFFSETS:
        try:
            return parse_region_table(file.pread(off, s.REGION_TABLE_SIZE), off)
        except CorruptImage as err:
            errors.append(str(err))
    raise CorruptImage(f"{file.path}: both region tables are damaged ({errors[0]})")


def load_layout(file: VhdxFile, header: Header, file_size: int) -> Layout:
    """:raises CorruptImage, UnsupportedFeature: with the offending value and offset."""
    regions = read_region_table(file)
    check_log_placement(regions, header.log_offset, header.log_length)
    if header.log_length and header.log_offset + header.log_length > file_size:
        raise CorruptImage(f"{file.path}: log at {header.log_offset:#x} lies past the end")
    for r in regions.all():
        if r.end > file_size and r.guid in s.KNOWN_REGIONS:
            raise CorruptImage(f"{file.path}: region {r.guid} at {r.file_offset:#x} past the end")
    md = regions.metadata
    metadata = file.pread(md.file_offset, md.length)
    items = parse_metadata_table(metadata, md.length)
    params = parse_disk_params(metadata, items)
    geometry = batlib.BatGeometry(
        params.block_size, params.logical_sector_size, params.virtual_size, params.has_parent
    )
    b = regions.bat
    if geometry.bat_bytes > b.length:
        raise CorruptImage(
            f"{file.path}: BAT region ({b.length} bytes) is too small for "
            f"{geometry.entry_count} entries"
        )
    bat = batlib.parse_bat(file.pread(b.file_offset, geometry.bat_bytes), geometry)
    reserved = [(0, s.HEADER_SECTION_SIZE, "the header section")]
    if header.log_length:
        reserved.append((header.log_offset, header.log_offset + header.log_length, "the log"))
    reserved += [(r.file_offset, r.end, f"region {r.guid}") for r in regions.all()]
    batlib.validate_bat(bat, geometry, file_size, reserved, b.file_offset)
    layout = Layout(regions, metadata, items, params, geometry, bat, reserved, 0)
    ends = [end for _, end, _ in reserved]
    allocated = [(i, e) for i, e in enumerate(bat) if e & s.BAT_STATE_MASK >= 6]
    ends += [batlib.entry_offset(e) + layout.entry_length(i, e) for i, e in allocated]
    layout.alloc_end = -(-max([file_size, *ends]) // MiB) * MiB
    return layout
