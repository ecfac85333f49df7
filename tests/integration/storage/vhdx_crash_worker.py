"""Child process for test_vhdx_crash: writes numbered operations into a differencing VHDX,
flushing after each one and recording it, until it is killed."""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path

from pyhv.storage.vhdx import VhdxImage

SECTOR = 512
SECTORS = 8 * 1024 * 1024 // SECTOR


def sector_pattern(value: int, sector: int) -> bytes:
    return struct.pack("<QQ", value, sector) * (SECTOR // 16)


def writes_for(seed: int, op: int) -> list[tuple[int, int, int]]:
    """(first sector, count, value) of operation ``op``: small sector runs, some crossing
    blocks, so sector bitmaps and allocations both change."""
    rnd = random.Random(seed * 100_003 + op)
    out = []
    for k in range(rnd.randrange(1, 6)):
        count = rnd.choice([1, 3, 7, 64, 700, 2100])
        first = rnd.randrange(0, SECTORS - count)
        out.append((first, count, op * 10 + k + 1))
    return out


def main() -> None:
    base, child, state, seed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    parent = VhdxImage(base, writable=False)
    img = VhdxImage(child, writable=True)
    img.attach_parent(parent)
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    op = 0
    while True:
        for first, count, value in writes_for(seed, op):
            data = b"".join(sector_pattern(value, s) for s in range(first, first + count))
            img.write(first * SECTOR, data)
        img.flush()
        os.write(fd, f"{op}\n".encode())
        os.fsync(fd)
        op += 1


if __name__ == "__main__":
    main()
