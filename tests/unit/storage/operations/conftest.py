"""An in-memory DiskImage with optional parent, to test operations without a file format."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.storage.image import (
    DiskImage,
    DiskType,
    Extent,
    ExtentState,
    ImageFormat,
    ImageInfo,
    merge_extents,
)

SECTOR = 512


class MemoryImage(DiskImage):
    """Sector-granular layer: ``held`` sectors are its own, the rest read from the parent."""

    format = ImageFormat.RAW

    def __init__(self, size: int, parent: MemoryImage | None = None, name: str = "mem") -> None:
        super().__init__()
        self.path = Path(name)
        self.writable = True
        self.parent = parent
        self.disk_type = DiskType.DIFFERENCING if parent else DiskType.DYNAMIC
        self.data = bytearray(size)
        self.held: set[int] = set()
        self.writes: list[tuple[int, int]] = []
        self.zero_writes: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        out = bytearray()
        pos, end = offset, offset + length
        while pos < end:
            n = min(end, (pos // SECTOR + 1) * SECTOR) - pos
            if pos // SECTOR in self.held or self.parent is None:
                out += self.data[pos : pos + n]
            else:
                out += self.parent.read(pos, n)
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        self.check_range(offset, len(data))
        self.writes.append((offset, len(data)))
        self.data[offset : offset + len(data)] = data
        self.held.update(range(offset // SECTOR, (offset + len(data) - 1) // SECTOR + 1))

    def write_zeroes(self, offset: int, length: int) -> None:
        self.zero_writes.append((offset, length))
        self.data[offset : offset + length] = bytes(length)
        self.held.update(range(offset // SECTOR, (offset + length - 1) // SECTOR + 1))

    def flush(self) -> None:
        pass

    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        missing = ExtentState.BACKING if self.parent and not chain else ExtentState.ZERO
        out = [
            Extent(s * SECTOR, SECTOR, ExtentState.DATA if s in self.held else missing)
            for s in range(self.size // SECTOR)
        ]
        return merge_extents(out)

    def info(self) -> ImageInfo:
        raise NotImplementedError

    def _close(self) -> None:
        pass


@pytest.fixture
def mem() -> type[MemoryImage]:
    return MemoryImage
