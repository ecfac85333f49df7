"""Helper process for the crash tests: changes an image in a loop until it is killed.

``python crash_worker.py OP IMAGE STATE SEED`` with OP one of ``write``, ``resize``,
``compact``, ``merge``. Operation ``i`` is derived from ``(SEED, i)`` alone, so the test can
recompute what every operation wrote. After operation ``i`` is complete and flushed the worker
appends ``done i`` to STATE (``ready i`` for a merge whose child is written but not yet
merged). It prints ``ready`` once its imports are done, so the test's kill delay measures work,
not start-up.
"""

from __future__ import annotations

import os
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.operations import merge_image

SECTOR = 512
MiB = 1 << 20
BASE_SIZE = 16 * MiB
GROW_STEP = MiB

Write = tuple[int, int, int]  # (first sector, sectors, value: 0 = zeros, else op number + 1)


def sector_pattern(value: int, sector: int) -> bytes:
    """Self-describing sector content: a torn or misplaced sector cannot pass for another."""
    return bytes(SECTOR) if value == 0 else struct.pack("<QQ", value, sector) * (SECTOR // 16)


def disk_size(op: str, done: int) -> int:
    """Virtual size once operations ``0..done-1`` are complete."""
    return BASE_SIZE + GROW_STEP * done if op == "resize" else BASE_SIZE


def writes_for(op: str, seed: int, i: int) -> list[Write]:
    rng = random.Random(seed * 100_003 + i)
    sectors = disk_size(op, i + 1) // SECTOR
    out: list[Write] = []
    if op == "resize":  # something in the part that just grew
        out.append((disk_size(op, i) // SECTOR + rng.randrange(GROW_STEP // SECTOR - 8), 8, i + 1))
    for _ in range(rng.randint(1, 4)):
        n = rng.choice([1, 7, 64, 300, 2048, 5000])
        out.append((rng.randrange(sectors - n), n, i + 1))
    if op == "compact":  # zeros over whole blocks, so compaction has something to give back
        start = rng.randrange(BASE_SIZE // MiB - 4) * (MiB // SECTOR)
        out.append((start, rng.randint(1, 4) * (MiB // SECTOR), 0))
    return out


def apply(image_write: Callable[[int, bytes], None], writes: list[Write]) -> None:
    for first, n, value in writes:
        image_write(
            first * SECTOR, b"".join(sector_pattern(value, s) for s in range(first, first + n))
        )


def record(state: int, line: str) -> None:
    os.write(state, f"{line}\n".encode())


def child_path(image: Path) -> Path:
    return image.with_name(f"child.a{image.suffix.lstrip('.')}")


def run(op: str, image: Path, state: int, seed: int) -> None:
    i = 0
    while True:
        writes = writes_for(op, seed, i)
        if op == "merge":
            child = child_path(image)
            create_image(
                child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(image))
            )
            with open_image(child, writable=True) as img:
                apply(img.write, writes)
                img.flush()
            record(state, f"ready {i}")
            merge_image(child)
        else:
            with open_image(image, writable=True) as img:
                if op == "resize":
                    img.resize(disk_size(op, i + 1))  # type: ignore[attr-defined]
                apply(img.write, writes)
                if op == "compact":
                    img.compact()  # type: ignore[attr-defined]
                img.flush()
        record(state, f"done {i}")
        i += 1


def main() -> None:
    op, image, state_path, seed = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    state = os.open(state_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    run(op, image, state, seed)


if __name__ == "__main__":
    main()
