"""Block allocation table math: entry states, chunk ratio, payload/sector-bitmap interleave,
BAT validation and sector-bitmap runs. Pure. # Ref: [MS-VHDX] §2.5.

The interleave: after every ``chunk_ratio`` payload entries comes one sector-bitmap entry, so
payload block ``i`` sits at BAT index ``i + i // chunk_ratio`` (not ``i``; writers that forget
this corrupt every disk larger than one chunk).
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from pyhv.errors import CorruptImage
from pyhv.storage.vhdx import structs as s
from pyhv.units import MiB

PRESENT_STATES = frozenset({s.PayloadState.FULLY_PRESENT, s.PayloadState.PARTIALLY_PRESENT})
VALID_PAYLOAD_STATES = frozenset(int(x) for x in s.PayloadState)
VALID_BITMAP_STATES = frozenset(int(x) for x in s.BitmapState)
_NOTABLE = frozenset({4, s.PayloadState.FULLY_PRESENT, s.PayloadState.PARTIALLY_PRESENT})


def present_blocks(entries: Sequence[int], geometry: BatGeometry) -> list[int]:
    """Payload blocks holding data in this file (FULLY or PARTIALLY_PRESENT), ascending."""
    cr = geometry.chunk_ratio
    cr1 = cr + 1
    return [
        i - i // cr1 for i, e in enumerate(entries) if e & 7 in PRESENT_STATES and i % cr1 != cr
    ]


def entry_offset(entry: int) -> int:
    return (entry >> s.BAT_FILE_OFFSET_SHIFT) * MiB


def pack_entry(state: int, file_offset: int = 0) -> int:
    return (file_offset // MiB) << s.BAT_FILE_OFFSET_SHIFT | state


@dataclass(frozen=True)
class BatGeometry:
    block_size: int
    logical_sector_size: int
    virtual_size: int
    has_parent: bool

    @cached_property
    def chunk_ratio(self) -> int:
        return (s.CHUNK_SECTORS * self.logical_sector_size) // self.block_size

    @cached_property
    def payload_blocks(self) -> int:
        return -(-self.virtual_size // self.block_size)

    @cached_property
    def bitmap_blocks(self) -> int:
        return -(-self.payload_blocks // self.chunk_ratio)

    @cached_property
    def entry_count(self) -> int:
        """§2.5: differencing disks carry every chunk's bitmap entry, others stop after the
        last payload entry."""
        if self.has_parent:
            return self.bitmap_blocks * (self.chunk_ratio + 1)
        return self.payload_blocks + (self.payload_blocks - 1) // self.chunk_ratio

    @property
    def bat_bytes(self) -> int:
        return self.entry_count * s.BAT_ENTRY_SIZE

    @cached_property
    def sectors_per_block(self) -> int:
        return self.block_size // self.logical_sector_size

    def payload_index(self, block: int) -> int:
        return block + block // self.chunk_ratio

    def bitmap_index(self, chunk: int) -> int:
        return chunk * (self.chunk_ratio + 1) + self.chunk_ratio

    def is_bitmap_index(self, index: int) -> bool:
        return index % (self.chunk_ratio + 1) == self.chunk_ratio

    def block_data_length(self, block: int) -> int:
        """Bytes of virtual disk block ``block`` covers (the last block may be partial)."""
        return min(self.block_size, self.virtual_size - block * self.block_size)

    def bitmap_location(self, block: int) -> tuple[int, int]:
        """(chunk, byte offset inside the chunk's bitmap) of block ``block``'s first bit."""
        chunk, nth = divmod(block, self.chunk_ratio)
        return chunk, nth * self.sectors_per_block // 8


def bat_region_length(geometry: BatGeometry) -> int:
    return -(-geometry.bat_bytes // MiB) * MiB


def parse_bat(buf: bytes, geometry: BatGeometry) -> list[int]:
    """:raises CorruptImage: when the BAT region is too short for the disk."""
    n = geometry.entry_count
    if len(buf) < n * s.BAT_ENTRY_SIZE:
        raise CorruptImage(f"vhdx: BAT region holds {len(buf) // 8} entries, the disk needs {n}")
    return list(memoryview(buf)[: n * s.BAT_ENTRY_SIZE].cast("Q"))


def pack_bat(entries: Sequence[int]) -> bytes:
    return array.array("Q", entries).tobytes()


def validate_bat(
    entries: Sequence[int],
    geometry: BatGeometry,
    file_size: int,
    reserved: Iterable[tuple[int, int, str]],
    bat_offset: int,
) -> None:
    """Check every entry: known state, no offset in the header area or past EOF, no overlap
    with another block or with the regions/log in ``reserved`` (start, end, name).

    :raises CorruptImage: naming the entry index, its value and the offending offset.
    """
    spans: list[tuple[int, int, str]] = list(reserved)
    cr = geometry.chunk_ratio
    cr1 = cr + 1
    # Most entries are unallocated payload blocks needing no check: pick the rest out first.
    notable = [i for i, e in enumerate(entries) if e & 7 in _NOTABLE or (e & 7 and i % cr1 == cr)]
    for index in notable:
        entry = entries[index]
        state = entry & s.BAT_STATE_MASK
        where = f"BAT entry {index} ({entry:#x}) at {bat_offset + index * 8:#x}"
        if index % cr1 == cr:
            if state not in VALID_BITMAP_STATES:
                raise CorruptImage(f"vhdx: {where} has invalid sector bitmap state {state}")
            if not geometry.has_parent:
                raise CorruptImage(f"vhdx: {where} has a sector bitmap in a non-differencing disk")
            length = s.SECTOR_BITMAP_BLOCK_SIZE
        else:
            if state not in VALID_PAYLOAD_STATES:
                raise CorruptImage(f"vhdx: {where} has invalid payload state {state}")
            if state == s.PayloadState.PARTIALLY_PRESENT and not geometry.has_parent:
                raise CorruptImage(f"vhdx: {where} is partially present in a non-differencing disk")
            block = index - index // cr1
            if block >= geometry.payload_blocks:
                raise CorruptImage(f"vhdx: {where} allocates a block beyond the virtual disk")
            length = geometry.block_data_length(block)
        offset = entry_offset(entry)
        if offset < s.HEADER_SECTION_SIZE:
            raise CorruptImage(f"vhdx: {where} points into the header area ({offset:#x})")
        if offset + length > file_size:
            raise CorruptImage(
                f"vhdx: {where} points after the end of the file ({offset:#x}, file {file_size:#x})"
            )
        spans.append((offset, offset + length, where))
    spans.sort()
    for a, b in itertools.pairwise(spans):
        if a[1] > b[0]:
            raise CorruptImage(f"vhdx: {b[2]} places a block at {b[0]:#x}, overlapping {a[2]}")


def bitmap_runs(bitmap: bytes | bytearray, first_sector: int, count: int) -> list[tuple[bool, int]]:
    """Split ``count`` sectors starting at bit ``first_sector`` of an LSB-first sector bitmap
    into runs ``(present, sectors)``; uses big-int bit tricks, no per-bit loop."""
    lo, hi = first_sector // 8, -(-(first_sector + count) // 8)
    bits = int.from_bytes(bitmap[lo:hi], "little") >> (first_sector - lo * 8)
    bits &= (1 << count) - 1
    runs: list[tuple[bool, int]] = []
    pos = 0
    while pos < count:
        rest = bits >> pos
        present = bool(rest & 1)
        probe = ~rest if present else rest  # find the next bit that differs
        nxt = count if probe == 0 else pos + (probe & -probe).bit_length() - 1
        nxt = min(nxt, count)
        runs.append((present, nxt - pos))
        pos = nxt
    return runs


def set_bitmap_bits(bitmap: bytearray, first_sector: int, count: int) -> None:
    """Mark ``count`` sectors from ``first_sector`` present, in whole bytes where possible."""
    end = first_sector + count
    pos = first_sector
    while pos < end and pos % 8:
        bitmap[pos // 8] |= 1 << (pos % 8)
        pos += 1
    whole = (end - pos) // 8
    if whole > 0:
        bitmap[pos // 8 : pos // 8 + whole] = b"\xff" * whole
        pos += whole * 8
    while pos < end:
        bitmap[pos // 8] |= 1 << (pos % 8)
        pos += 1
