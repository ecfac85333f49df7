"""Raw images: the file is the disk; holes are unallocated zeros."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pyhv.errors import UnsupportedFeature, UsageError
from pyhv.storage.fileio import (
    CachedReads,
    create_new,
    data_runs,
    os_errors,
    pread_exact,
    punch_hole,
    pwrite_all,
)
from pyhv.storage.image import (
    CreateSpec,
    DiskImage,
    DiskType,
    Extent,
    ExtentState,
    ImageFormat,
    ImageInfo,
    merge_extents,
)

_ZERO_SCAN = 1 << 20  # compact looks for zeros in pieces this large
_ZERO_GRAIN = 64 << 10  # and punches holes at this granularity


class RawImage(DiskImage):
    format = ImageFormat.RAW

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__()
        self.path = path
        self.writable = writable
        with os_errors(path, "open"):
            self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
            st = os.fstat(self.fd)
            self._size = os.lseek(self.fd, 0, os.SEEK_END)  # st_size is 0 for block devices
        self.disk_type = DiskType.DYNAMIC if st.st_blocks * 512 < st.st_size else DiskType.FIXED
        self._cached = CachedReads(self.fd)

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        with os_errors(self.path, "read"):
            return pread_exact(self.fd, length, offset)

    def read_cached(self, offset: int, length: int) -> bytes | None:
        return self._cached.read(offset, length) if self.cached_range_ok(offset, length) else None

    def write(self, offset: int, data: bytes) -> None:
        self._check_writable()
        self.check_range(offset, len(data))
        with os_errors(self.path, "write"):
            pwrite_all(self.fd, data, offset)

    def flush(self) -> None:
        if self.writable:
            with os_errors(self.path, "fsync"):
                os.fsync(self.fd)

    def discard(self, offset: int, length: int) -> None:
        self._check_writable()
        self.check_range(offset, length)
        with os_errors(self.path, "discard"):
            punch_hole(self.fd, offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        self._check_writable()
        self.check_range(offset, length)
        with os_errors(self.path, "write zeroes"):
            if not punch_hole(self.fd, offset, length):
                super().write_zeroes(offset, length)

    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        if length is None:
            length = self.size - offset
        self.check_range(offset, length)
        out: list[Extent] = []
        pos = offset
        with os_errors(self.path, "seek"):
            runs = data_runs(self.fd, offset, offset + length)
        for start, n in runs:
            out.append(Extent(pos, start - pos, ExtentState.ZERO))
            out.append(Extent(start, n, ExtentState.DATA))
            pos = start + n
        out.append(Extent(pos, offset + length - pos, ExtentState.ZERO))
        return merge_extents(out)

    def resize(self, new_size: int) -> None:
        """Grow or shrink; growing adds a hole, shrinking drops the tail."""
        self._check_writable()
        if new_size < 0:
            raise UsageError(f"invalid size {new_size}")
        with self.lock, os_errors(self.path, "resize"):
            os.ftruncate(self.fd, new_size)
            os.fsync(self.fd)
            self._size = new_size

    def compact(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Punch holes where the data reads as zeros; returns the bytes given back."""
        self._check_writable()
        zero = bytes(_ZERO_GRAIN)
        with self.lock, os_errors(self.path, "compact"):
            before = os.fstat(self.fd).st_blocks * 512
            for start, n in data_runs(self.fd, 0, self.size):
                for pos in range(start - start % _ZERO_SCAN, start + n, _ZERO_SCAN):
                    self._punch_zero_grains(pos, min(_ZERO_SCAN, self.size - pos), zero)
                    if progress:
                        progress(pos, self.size)
            os.fsync(self.fd)
            after = os.fstat(self.fd).st_blocks * 512
        return max(0, before - after)

    def _punch_zero_grains(self, pos: int, n: int, zero: bytes) -> None:
        buf = pread_exact(self.fd, n, pos)
        for g in range(0, n - _ZERO_GRAIN + 1, _ZERO_GRAIN):
            if buf[g : g + _ZERO_GRAIN] == zero:
                punch_hole(self.fd, pos + g, _ZERO_GRAIN)

    def info(self) -> ImageInfo:
        with os_errors(self.path, "stat"):
            st = os.fstat(self.fd)
        return ImageInfo(
            path=str(self.path),
            format=self.format,
            disk_type=self.disk_type,
            size=self.size,
            file_size=st.st_size,
            minimum_size=0,
            block_size=0,
            logical_sector_size=512,
            physical_sector_size=512,
            identifier="",
            allocated_bytes=min(st.st_blocks * 512, st.st_size),
        )

    def _check_writable(self) -> None:
        if not self.writable:
            raise UnsupportedFeature(f"{self.path}: image is open read-only")

    def _close(self) -> None:
        os.close(self.fd)


class RawFormat:
    format = ImageFormat.RAW

    def open_layer(self, path: Path, writable: bool) -> DiskImage:
        return RawImage(path, writable)

    def create(self, path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
        """Sparse file for dynamic, preallocated for fixed; raw has no differencing."""
        if parent is not None or spec.disk_type == DiskType.DIFFERENCING:
            raise UnsupportedFeature(f"{path}: raw images cannot have a parent; use .vhd or .vhdx")
        with os_errors(path, "create"):
            fd = create_new(path)
            try:
                os.ftruncate(fd, spec.size)
                if spec.disk_type == DiskType.FIXED and spec.size:
                    os.posix_fallocate(fd, 0, spec.size)
                os.fsync(fd)
            finally:
                os.close(fd)

    def check(self, path: Path, repair: bool) -> list[str]:
        """A raw file has no structure that could be damaged."""
        return []


FORMAT = RawFormat()
