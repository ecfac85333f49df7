"""Block allocation table and sector-bitmap math (pure).

BAT entries are sector numbers of a block's bitmap (``0xFFFFFFFF``: not allocated). A block is
``[sector bitmap][block_size data]``; the bitmap holds one bit per 512-byte sector, MSB first,
padded to a whole sector. Bitmaps are handled as Python ints so runs are found with a few big
integer operations per block, not a loop per sector.
"""

from __future__ import annotations

import itertools
import sys
from array import array

from pyhv.storage.vhd.structs import BAT_UNUSED, SECTOR_SIZE


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def bitmap_size(block_size: int) -> int:
    """Bytes of a block's sector bitmap on disk (whole sectors)."""
    sectors = -(-block_size // SECTOR_SIZE)
    return align_up(-(-sectors // 8), SECTOR_SIZE)


def entries_for(size: int, block_size: int) -> int:
    """BAT entries a disk of ``size`` bytes needs (exactly, as Azure's tools expect)."""
    return -(-size // block_size)


def bat_bytes(entries: int) -> int:
    """On-disk BAT area for ``entries`` (padded to a sector)."""
    return align_up(entries * 4, SECTOR_SIZE)


def parse_bat(buf: bytes, entries: int) -> array[int]:
    """Big-endian u32 entries into a native array."""
    bat = array("I")
    bat.frombytes(buf[: entries * 4].ljust(entries * 4, b"\xff"))
    if sys.byteorder == "little":
        bat.byteswap()
    return bat


def pack_entries(values: list[int] | array[int]) -> bytes:
    out = array("I", values)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def bitmap_to_int(bitmap: bytes, sectors_per_block: int) -> int:
    """Bit ``sectors_per_block - 1 - i`` of the result is sector ``i`` of the block."""
    nbytes = -(-sectors_per_block // 8)
    value = int.from_bytes(bitmap[:nbytes], "big")
    return value >> (nbytes * 8 - sectors_per_block)


def int_to_bitmap(value: int, sectors_per_block: int, size: int) -> bytes:
    nbytes = -(-sectors_per_block // 8)
    value <<= nbytes * 8 - sectors_per_block
    return value.to_bytes(nbytes, "big").ljust(size, b"\0")


def run_mask(first: int, count: int, sectors_per_block: int) -> int:
    """Bits of sectors ``first .. first+count-1`` in the int form of a bitmap."""
    return ((1 << count) - 1) << (sectors_per_block - first - count)


def bitmap_runs(
    value: int, first: int, count: int, sectors_per_block: int
) -> list[tuple[int, int, bool]]:
    """``(first_sector, sectors, present)`` runs covering ``first .. first+count-1``."""
    v = (value >> (sectors_per_block - first - count)) & ((1 << count) - 1)
    runs: list[tuple[int, int, bool]] = []
    pos = first
    remaining = count
    while remaining:
        top = (v >> (remaining - 1)) & 1
        # the run ends at the highest bit of the other value
        other = (~v) & ((1 << remaining) - 1) if top else v
        n = remaining - other.bit_length()
        runs.append((pos, n, bool(top)))
        pos += n
        remaining -= n
        v &= (1 << remaining) - 1
    return runs


def bat_problems(
    bat: array[int], record_size: int, reserved: list[tuple[int, int, str]], limit: int
) -> list[str]:
    """Entries that point past ``limit``, into metadata (``reserved``: start, end, name), or
    into each other; one line each (at most a few per kind, so a wrecked BAT stays readable)."""
    problems: list[str] = []
    used = sorted((e * SECTOR_SIZE, i) for i, e in enumerate(bat) if e != BAT_UNUSED)
    for start, i in used:
        end = start + record_size
        if end > limit:
            problems.append(
                f"BAT entry {i} points past the end of the file ({start:#x}+{record_size:#x})"
            )
        for r_start, r_end, name in reserved:
            if start < r_end and r_start < end:
                problems.append(f"BAT entry {i} ({start:#x}) overlaps the {name}")
        if len(problems) > 8:
            return problems
    for (a, i), (b, j) in itertools.pairwise(used):
        if b < a + record_size:
            problems.append(f"BAT entries {i} and {j} overlap ({a:#x}, {b:#x})")
            if len(problems) > 8:
                break
    return problems
