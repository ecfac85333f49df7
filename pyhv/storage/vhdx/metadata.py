"""Metadata region: table, disk parameters, parent locator. Pure.

# Ref: [MS-VHDX] §2.6.1 (table), §2.6.2 (known items), §2.6.2.6 (parent locator).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhdx import structs as s


@dataclass(frozen=True)
class MetadataItem:
    item_id: uuid.UUID
    offset: int  # from the start of the metadata region
    length: int
    flags: int

    @property
    def required(self) -> bool:
        return bool(self.flags & s.METADATA_FLAG_IS_REQUIRED)


@dataclass(frozen=True)
class DiskParams:
    """Everything the known metadata items say about the virtual disk."""

    block_size: int
    virtual_size: int
    logical_sector_size: int
    physical_sector_size: int
    page83_id: uuid.UUID
    leave_block_allocated: bool = False
    has_parent: bool = False
    parent_locator: dict[str, str] = field(default_factory=dict)


def parse_metadata_table(buf: bytes, region_length: int) -> list[MetadataItem]:
    """:raises CorruptImage: bad signature, bounds, overlaps. :raises UnsupportedFeature:
    an unknown required item."""
    if len(buf) < s.METADATA_TABLE_SIZE:
        raise CorruptImage("vhdx: metadata table is truncated")
    sig, _, count = s.METADATA_HEADER_STRUCT.unpack_from(buf)
    if sig != s.METADATA_SIGNATURE:
        raise CorruptImage("vhdx: metadata table has no 'metadata' signature")
    if count > s.METADATA_MAX_ENTRIES:
        raise CorruptImage(f"vhdx: metadata table claims {count} entries (max 2047)")
    items: list[MetadataItem] = []
    seen: set[uuid.UUID] = set()
    for i in range(count):
        raw_id, off, length, flags, _ = s.METADATA_ENTRY_STRUCT.unpack_from(
            buf, s.METADATA_HEADER_STRUCT.size + i * s.METADATA_ENTRY_STRUCT.size
        )
        item = MetadataItem(uuid.UUID(bytes_le=raw_id), off, length, flags)
        if item.item_id in seen and not flags & s.METADATA_FLAG_IS_USER:
            raise CorruptImage(f"vhdx: metadata item {item.item_id} listed twice")
        seen.add(item.item_id)
        if length and (
            off < s.METADATA_TABLE_SIZE
            or length > s.METADATA_ITEM_MAX_LENGTH
            or off + length > region_length
        ):
            raise CorruptImage(
                f"vhdx: metadata item {item.item_id} at {off:#x}+{length:#x} is outside "
                f"the metadata region (length {region_length:#x})"
            )
        if item.item_id not in s.KNOWN_METADATA and item.required:
            raise UnsupportedFeature(f"vhdx: unknown required metadata item {item.item_id}")
        items.append(item)
    spans = sorted((it.offset, it.offset + it.length, it.item_id) for it in items if it.length)
    for a, b in itertools.pairwise(spans):
        if a[1] > b[0]:
            raise CorruptImage(f"vhdx: metadata items {a[2]} and {b[2]} overlap at {b[0]:#x}")
    return items


def _item(region: bytes, items: dict[uuid.UUID, MetadataItem], guid: uuid.UUID, size: int) -> bytes:
    it = items.get(guid)
    if it is None:
        raise CorruptImage(f"vhdx: required metadata item {guid} is missing")
    if it.length < size:
        raise CorruptImage(f"vhdx: metadata item {guid} is {it.length} bytes, expected {size}")
    return region[it.offset : it.offset + size]


def parse_disk_params(region: bytes, items: list[MetadataItem]) -> DiskParams:
    """Read and validate the known items of a metadata region.

    :raises CorruptImage: missing items or values outside the spec's limits.
    """
    by_id = {it.item_id: it for it in items}
    fp = int.from_bytes(_item(region, by_id, s.FILE_PARAMETERS_GUID, 8), "little")
    block_size, fp_flags = fp & 0xFFFFFFFF, fp >> 32
    vsize = int.from_bytes(_item(region, by_id, s.VIRTUAL_DISK_SIZE_GUID, 8), "little")
    page83 = uuid.UUID(bytes_le=_item(region, by_id, s.PAGE83_DATA_GUID, 16))
    lss = int.from_bytes(_item(region, by_id, s.LOGICAL_SECTOR_SIZE_GUID, 4), "little")
    pss = int.from_bytes(_item(region, by_id, s.PHYSICAL_SECTOR_SIZE_GUID, 4), "little")
    if (
        block_size < s.MIN_BLOCK_SIZE
        or block_size > s.MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise CorruptImage(f"vhdx: block size {block_size} is not a power of two in 1–256 MiB")
    if lss not in s.SECTOR_SIZES:
        raise CorruptImage(f"vhdx: logical sector size {lss} is not 512 or 4096")
    if pss not in s.SECTOR_SIZES:
        raise CorruptImage(f"vhdx: physical sector size {pss} is not 512 or 4096")
    if vsize == 0 or vsize % lss or vsize > s.MAX_VIRTUAL_DISK_SIZE:
        raise CorruptImage(
            f"vhdx: virtual disk size {vsize} is not a multiple of {lss} in (0, 64 TiB]"
        )
    has_parent = bool(fp_flags & s.FILE_PARAMETERS_HAS_PARENT)
    locator: dict[str, str] = {}
    if has_parent:
        it = by_id.get(s.PARENT_LOCATOR_GUID)
        if it is None or not it.length:
            raise CorruptImage("vhdx: differencing disk without a parent locator")
        locator = parse_parent_locator(region[it.offset : it.offset + it.length])
    return DiskParams(
        block_size=block_size,
        virtual_size=vsize,
        logical_sector_size=lss,
        physical_sector_size=pss,
        page83_id=page83,
        leave_block_allocated=bool(fp_flags & s.FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED),
        has_parent=has_parent,
        parent_locator=locator,
    )


def parse_parent_locator(buf: bytes) -> dict[str, str]:
    """Key/value pairs of a VHDX parent locator (§2.6.2.6.3).

    :raises CorruptImage: bounds or encoding errors, missing ``parent_linkage``.
    :raises UnsupportedFeature: a locator type other than the VHDX one.
    """
    hs = s.PARENT_LOCATOR_HEADER_STRUCT
    if len(buf) < hs.size:
        raise CorruptImage("vhdx: parent locator is truncated")
    raw_type, _, count = hs.unpack_from(buf)
    if uuid.UUID(bytes_le=raw_type) != s.VHDX_PARENT_LOCATOR_TYPE:
        raise UnsupportedFeature(
            f"vhdx: parent locator type {uuid.UUID(bytes_le=raw_type)} is not supported"
        )
    es = s.PARENT_LOCATOR_ENTRY_STRUCT
    if hs.size + count * es.size > len(buf):
        raise CorruptImage(f"vhdx: parent locator claims {count} entries, more than fit")
    out: dict[str, str] = {}
    for i in range(count):
        koff, voff, klen, vlen = es.unpack_from(buf, hs.size + i * es.size)
        if koff + klen > len(buf) or voff + vlen > len(buf) or not klen or not vlen:
            raise CorruptImage(f"vhdx: parent locator entry {i} points outside the locator")
        try:
            key = buf[koff : koff + klen].decode("utf-16-le")
            out[key] = buf[voff : voff + vlen].decode("utf-16-le")
        except UnicodeDecodeError as err:
            raise CorruptImage(f"vhdx: parent locator entry {i} is not UTF-16") from err
    if "parent_linkage" not in out:
        raise CorruptImage("vhdx: parent locator has no parent_linkage")
    return out


def pack_parent_locator(entries: dict[str, str]) -> bytes:
    hs, es = s.PARENT_LOCATOR_HEADER_STRUCT, s.PARENT_LOCATOR_ENTRY_STRUCT
    head = bytearray(hs.pack(s.VHDX_PARENT_LOCATOR_TYPE.bytes_le, 0, len(entries)))
    table = bytearray()
    strings = bytearray()
    base = hs.size + es.size * len(entries)
    for key, value in entries.items():
        k, v = key.encode("utf-16-le"), value.encode("utf-16-le")
        koff = base + len(strings)
        strings += k
        voff = base + len(strings)
        strings += v
        table += es.pack(koff, voff, len(k), len(v))
    return bytes(head + table + strings)


def format_linkage(guid: uuid.UUID) -> str:
    """GUID text for parent_linkage: braces, lower case as §2.6.2.6.3's text says. (Its example
    is upper case; libvhdi parses lower case only, so upper case breaks that reader. Reading
    accepts either.)"""
    return "{" + str(guid) + "}"


def parse_linkage(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip().strip("{}"))
    except ValueError:
        return None


# Item order and flags as Windows writes them (FileParameters: required only).
_LAYOUT = (
    (s.FILE_PARAMETERS_GUID, s.METADATA_FLAG_IS_REQUIRED),
    (s.VIRTUAL_DISK_SIZE_GUID, s.METADATA_FLAG_IS_REQUIRED | s.METADATA_FLAG_IS_VIRTUAL_DISK),
    (s.PAGE83_DATA_GUID, s.METADATA_FLAG_IS_REQUIRED | s.METADATA_FLAG_IS_VIRTUAL_DISK),
    (s.LOGICAL_SECTOR_SIZE_GUID, s.METADATA_FLAG_IS_REQUIRED | s.METADATA_FLAG_IS_VIRTUAL_DISK),
    (s.PHYSICAL_SECTOR_SIZE_GUID, s.METADATA_FLAG_IS_REQUIRED | s.METADATA_FLAG_IS_VIRTUAL_DISK),
    (s.PARENT_LOCATOR_GUID, s.METADATA_FLAG_IS_REQUIRED),
)


def pack_metadata_region(p: DiskParams, region_length: int) -> bytes:
    """A complete metadata region (table at 0, items from 64 KiB) for ``p``.

    :raises UnsupportedFeature: when the parent locator does not fit.
    """
    flags = (s.FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED if p.leave_block_allocated else 0) | (
        s.FILE_PARAMETERS_HAS_PARENT if p.has_parent else 0
    )
    values = {
        s.FILE_PARAMETERS_GUID: (p.block_size | flags << 32).to_bytes(8, "little"),
        s.VIRTUAL_DISK_SIZE_GUID: p.virtual_size.to_bytes(8, "little"),
        s.PAGE83_DATA_GUID: p.page83_id.bytes_le,
        s.LOGICAL_SECTOR_SIZE_GUID: p.logical_sector_size.to_bytes(4, "little"),
        s.PHYSICAL_SECTOR_SIZE_GUID: p.physical_sector_size.to_bytes(4, "little"),
    }
    if p.has_parent:
        values[s.PARENT_LOCATOR_GUID] = pack_parent_locator(p.parent_locator)
    buf = bytearray(region_length)
    layout = [(g, f) for g, f in _LAYOUT if g in values]
    s.METADATA_HEADER_STRUCT.pack_into(buf, 0, s.METADATA_SIGNATURE, 0, len(layout))
    pos = s.METADATA_TABLE_SIZE
    for i, (guid, item_flags) in enumerate(layout):
        value = values[guid]
        if pos + len(value) > region_length or len(value) > s.METADATA_ITEM_MAX_LENGTH:
            raise UnsupportedFeature("vhdx: parent locator is too long for the metadata region")
        s.METADATA_ENTRY_STRUCT.pack_into(
            buf,
            s.METADATA_HEADER_STRUCT.size + i * s.METADATA_ENTRY_STRUCT.size,
            guid.bytes_le,
            pos,
            len(value),
            item_flags,
            0,
        )
        buf[pos : pos + len(value)] = value
        pos += len(value)
    return bytes(buf)


def replace_item(region: bytes, items: list[MetadataItem], guid: uuid.UUID, value: bytes) -> bytes:
    """The metadata region with item ``guid`` holding ``value``; other items stay where they are.

    The value is written in place when it fits the old slot, else after the last item.
    :raises UnsupportedFeature: when it does not fit in the region.
    """
    buf = bytearray(region)
    index = next((i for i, it in enumerate(items) if it.item_id == guid), None)
    if index is None:
        raise CorruptImage(f"vhdx: metadata item {guid} is missing")
    old = items[index]
    if len(value) <= old.length:
        offset = old.offset
        buf[offset : offset + old.length] = bytes(old.length)
    else:
        offset = max([s.METADATA_TABLE_SIZE] + [it.offset + it.length for it in items])
        if offset + len(value) > len(buf):
            raise UnsupportedFeature(f"vhdx: metadata item {guid} does not fit in the region")
    buf[offset : offset + len(value)] = value
    s.METADATA_ENTRY_STRUCT.pack_into(
        buf,
        s.METADATA_HEADER_STRUCT.size + index * s.METADATA_ENTRY_STRUCT.size,
        guid.bytes_le,
        offset,
        len(value),
        old.flags,
        0,
    )
    return bytes(buf)
