"""Byte-range arithmetic for copies: chunking, unions of allocation maps, zero detection.

Pure functions over ``(offset, length)`` pairs and buffers, so the copy loop stays a loop.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

Range = tuple[int, int]  # (offset, length)


def split_aligned(offset: int, length: int, step: int) -> Iterator[Range]:
    """Cut a range into pieces of at most ``step`` whose inner boundaries are multiples of ``step``.

    Aligned pieces line up with the target's blocks, so a zero piece is a whole free block.
    """
    end = offset + length
    pos = offset
    while pos < end:
        nxt = min((pos // step + 1) * step, end)
        yield pos, nxt - pos
        pos = nxt


def union(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping cover of the given ranges (touching ranges are joined)."""
    out: list[Range] = []
    for off, n in sorted(r for r in ranges if r[1] > 0):
        if out and off <= out[-1][0] + out[-1][1]:
            prev_off, prev_n = out[-1]
            out[-1] = (prev_off, max(prev_off + prev_n, off + n) - prev_off)
        else:
            out.append((off, n))
    return out


@functools.lru_cache(maxsize=16)
def zeros(n: int) -> bytes:
    """A shared zero buffer: ``buf == zeros(len(buf))`` is a memcmp, the cheapest zero test."""
    return bytes(n)


def is_zero(buf: bytes) -> bool:
    return buf == zeros(len(buf))


def nonzero_runs(buf: bytes, offset: int, grain: int) -> list[Range]:
    """Absolute ranges of ``buf`` (which starts at ``offset``) not made only of zeros.

    The buffer is judged in ``grain``-aligned pieces; neighbouring non-zero pieces are joined so
    the caller issues one write per run.
    """
    if is_zero(buf):
        return []
    runs: list[Range] = []
    for off, n in split_aligned(offset, len(buf), grain):
        rel = off - offset
        # Data rarely starts and ends with zero bytes: look at those before copying a slice.
        if not (buf[rel] or buf[rel + n - 1]) and is_zero(buf[rel : rel + n]):
            continue
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1] = (runs[-1][0], runs[-1][1] + n)
        else:
            runs.append((off, n))
    return runs
