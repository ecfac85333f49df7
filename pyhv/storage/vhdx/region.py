"""Region table: parse, validate, pack. Pure. # Ref: [MS-VHDX] §2.2.3."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.header import checksum


@dataclass(frozen=True)
class Region:
    guid: uuid.UUID
    file_offset: int
    length: int
    required: bool

    @property
    def end(self) -> int:
        return self.file_offset + self.length


@dataclass(frozen=True)
class RegionTable:
    bat: Region
    metadata: Region
    others: tuple[Region, ...] = ()

    def all(self) -> list[Region]:
        return [self.bat, self.metadata, *self.others]


def parse_region_table(buf: bytes, offset: int) -> RegionTable:
    """Parse and validate the region table stored at file ``offset``.

    :raises CorruptImage: signature, checksum, alignment, overlap, missing BAT/metadata.
    :raises UnsupportedFeature: an unknown region marked required.
    """
    if len(buf) < s.REGION_TABLE_SIZE:
        raise CorruptImage(f"vhdx: region table at {offset:#x} is truncated")
    buf = bytes(buf[: s.REGION_TABLE_SIZE])
    sig, crc, count, _ = s.REGION_TABLE_HEADER_STRUCT.unpack_from(buf)
    if sig != s.REGION_TABLE_SIGNATURE:
        raise CorruptImage(f"vhdx: region table at {offset:#x} has no 'regi' signature")
    if checksum(buf, s.REGION_TABLE_CHECKSUM_OFFSET) != crc:
        raise CorruptImage(f"vhdx: region table checksum mismatch at {offset:#x}")
    if count > s.REGION_TABLE_MAX_ENTRIES:
        raise CorruptImage(f"vhdx: region table at {offset:#x} claims {count} entries (max 2047)")
    regions: dict[uuid.UUID, Region] = {}
    for i in range(count):
        raw_guid, file_offset, length, flags = s.REGION_ENTRY_STRUCT.unpack_from(
            buf, s.REGION_TABLE_HEADER_STRUCT.size + i * s.REGION_ENTRY_STRUCT.size
        )
        r = Region(uuid.UUID(bytes_le=raw_guid), file_offset, length, bool(flags & 1))
        if r.guid in regions:
            raise CorruptImage(f"vhdx: region {r.guid} listed twice in the table at {offset:#x}")
        if (
            file_offset % s.REGION_ALIGNMENT
            or length % s.REGION_ALIGNMENT
            or file_offset < s.HEADER_SECTION_SIZE
            or length == 0
        ):
            raise CorruptImage(
                f"vhdx: region {r.guid} at {file_offset:#x}+{length:#x} is not 1 MiB aligned "
                "past the header section"
            )
        if r.guid not in s.KNOWN_REGIONS and r.required:
            raise UnsupportedFeature(f"vhdx: unknown required region {r.guid}")
        regions[r.guid] = r
    ordered = sorted(regions.values(), key=lambda r: r.file_offset)
    for a, b in itertools.pairwise(ordered):
        if a.end > b.file_offset:
            raise CorruptImage(f"vhdx: regions {a.guid} and {b.guid} overlap at {b.file_offset:#x}")
    try:
        bat = regions.pop(s.BAT_REGION_GUID)
        metadata = regions.pop(s.METADATA_REGION_GUID)
    except KeyError as err:
        raise CorruptImage(f"vhdx: region table at {offset:#x} lacks region {err.args[0]}") from err
    return RegionTable(bat, metadata, tuple(regions.values()))


def pack_region_table(table: RegionTable) -> bytes:
    buf = bytearray(s.REGION_TABLE_SIZE)
    regions = table.all()
    s.REGION_TABLE_HEADER_STRUCT.pack_into(buf, 0, s.REGION_TABLE_SIGNATURE, 0, len(regions), 0)
    for i, r in enumerate(regions):
        s.REGION_ENTRY_STRUCT.pack_into(
            buf,
            s.REGION_TABLE_HEADER_STRUCT.size + i * s.REGION_ENTRY_STRUCT.size,
            r.guid.bytes_le,
            r.file_offset,
            r.length,
            int(r.required),
        )
    buf[4:8] = checksum(buf, s.REGION_TABLE_CHECKSUM_OFFSET).to_bytes(4, "little")
    return bytes(buf)


def check_log_placement(table: RegionTable, log_offset: int, log_length: int) -> None:
    """The log must not overlap any region.

    :raises CorruptImage: naming the overlapping region.
    """
    if not log_length:
        return
    for r in table.all():
        if r.file_offset < log_offset + log_length and log_offset < r.end:
            raise CorruptImage(
                f"vhdx: log at {log_offset:#x}+{log_length:#x} overlaps region {r.guid}"
            )
