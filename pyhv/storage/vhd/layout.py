"""Where things go in a dynamic VHD file when it changes shape (pure planning).

Used by resize (does the BAT still fit where it is?) and compact (which blocks move into which
holes so the file can shrink).
"""

from __future__ import annotations

from pyhv.storage.vhd.bat import align_up


def room_after(start: int, occupied: list[tuple[int, int]], limit: int) -> int:
    """Bytes free from ``start`` up to the next occupied range (or ``limit``)."""
    following = [s for s, _ in occupied if s >= start]
    return min([limit, *following]) - start


def plan_compaction(
    blocks: dict[int, int],
    reserved: list[tuple[int, int]],
    record_size: int,
    bitmap_size: int,
    alignment: int,
) -> tuple[list[tuple[int, int, int]], int]:
    """Moves ``(block, from, to)`` that fill holes with the last blocks, and the end of the
    data afterwards. ``blocks`` maps block number to its record's file offset; each move lands
    wholly below the block it moves, so the source is never overwritten."""
    where = dict(blocks)
    moves: list[tuple[int, int, int]] = []
    while where:
        last = max(where, key=lambda b: where[b])
        last_start = where[last]
        occupied = sorted(reserved + [(s, s + record_size) for b, s in where.items() if b != last])
        target = first_fit(occupied, record_size, last_start, alignment, lead=bitmap_size)
        if target is None:
            break
        moves.append((last, last_start, target))
        where[last] = target
    ends = [e for _, e in reserved] + [s + record_size for s in where.values()]
    return moves, max(ends)


def first_fit(
    occupied: list[tuple[int, int]], length: int, below: int, alignment: int, lead: int = 0
) -> int | None:
    """Lowest offset for ``length`` bytes between the sorted ``occupied`` ranges, ending at or
    before ``below``, with ``offset + lead`` aligned (``lead``: a block's bitmap)."""
    prev_end = 0
    for start, end in [*occupied, (below, below)]:
        cand = align_up(prev_end + lead, alignment) - lead
        if cand + length <= min(start, below):
            return cand
        prev_end = max(prev_end, end)
    return None
