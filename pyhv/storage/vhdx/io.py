"""Virtual byte range → runs of file data, zeros and parent data. Pure.

# Ref: [MS-VHDX] §2.5.1 (block states), §2.5.2 (sector bitmap).
The caller passes the in-memory BAT and a function returning a chunk's sector bitmap; the
result is one entry per contiguous run, so I/O happens per run, never per sector.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.bat import BatGeometry, bitmap_runs, entry_offset


class Source(enum.Enum):
    FILE = "file"
    ZERO = "zero"
    PARENT = "parent"


@dataclass(frozen=True)
class Run:
    source: Source
    offset: int  # virtual byte offset
    length: int
    file_offset: int = 0  # for FILE


def _append(out: list[Run], run: Run) -> None:
    if out:
        prev = out[-1]
        if (
            prev.source == run.source
            and prev.offset + prev.length == run.offset
            and (run.source != Source.FILE or prev.file_offset + prev.length == run.file_offset)
        ):
            out[-1] = Run(prev.source, prev.offset, prev.length + run.length, prev.file_offset)
            return
    out.append(run)


def map_range(
    geometry: BatGeometry,
    bat: Sequence[int],
    offset: int,
    length: int,
    get_bitmap: Callable[[int], bytes | bytearray],
) -> list[Run]:
    """Runs covering ``[offset, offset + length)`` of the virtual disk, in order."""
    out: list[Run] = []
    bs = geometry.block_size
    pos, end = offset, offset + length
    absent = Source.PARENT if geometry.has_parent else Source.ZERO
    while pos < end:
        block, in_block = divmod(pos, bs)
        n = min(bs - in_block, end - pos)
        entry = bat[geometry.payload_index(block)]
        state = entry & s.BAT_STATE_MASK
        if state == s.PayloadState.FULLY_PRESENT:
            _append(out, Run(Source.FILE, pos, n, entry_offset(entry) + in_block))
        elif state == s.PayloadState.PARTIALLY_PRESENT:
            base = entry_offset(entry) + in_block
            for source, rel, count in _partial_runs(geometry, bat, block, in_block, n, get_bitmap):
                at = base + rel if source is Source.FILE else 0
                _append(out, Run(source, pos + rel, count, at))
        elif state == s.PayloadState.NOT_PRESENT:
            _append(out, Run(absent, pos, n))
        else:  # ZERO, UNMAPPED, UNDEFINED: zeros, also in differencing disks (§2.5.1.1)
            _append(out, Run(Source.ZERO, pos, n))
        pos += n
    return out


def _partial_runs(
    geometry: BatGeometry,
    bat: Sequence[int],
    block: int,
    in_block: int,
    length: int,
    get_bitmap: Callable[[int], bytes | bytearray],
) -> list[tuple[Source, int, int]]:
    """(source, offset relative to ``in_block``, length) for a PARTIALLY_PRESENT block."""
    lss = geometry.logical_sector_size
    chunk, byte_in_bitmap = geometry.bitmap_location(block)
    bitmap = get_bitmap(chunk)
    first = in_block // lss
    last = -(-(in_block + length) // lss)
    runs: list[tuple[Source, int, int]] = []
    sector = first
    for present, count in bitmap_runs(bitmap, byte_in_bitmap * 8 + first, last - first):
        lo = max(sector * lss, in_block)
        hi = min((sector + count) * lss, in_block + length)
        runs.append((Source.FILE if present else Source.PARENT, lo - in_block, hi - lo))
        sector += count
    return runs
