"""VhdxFile: the open file descriptor of a VHDX image, the one place VHDX code does file I/O.

It translates ``OSError`` into one-line storage errors, and lets a read-only open see a replayed
log: sectors in :attr:`VhdxFile.overlay` replace what the file holds, so the file stays untouched.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyhv.errors import NotFoundError, PyhvError, StorageError, UsageError
from pyhv.storage.fileio import CachedReads, create_new, punch_hole
from pyhv.units import MiB

OVERLAY_SECTOR = 4096


def storage_error(path: Path, op: str, err: OSError) -> PyhvError:
    """The storage error a user can act on, for ``err`` (the one translation point)."""
    if isinstance(err, FileNotFoundError):
        return NotFoundError(f"{path}: no such file")
    if err.errno == errno.ENOSPC:
        return StorageError(f"{path}: {op} failed: no space left on the device")
    return StorageError(f"{path}: {op} failed: {err.strerror or err}")


@contextmanager
def os_errors(path: Path, op: str) -> Iterator[None]:
    """Turn OSError raised inside into :func:`storage_error`."""
    try:
        yield
    except OSError as err:
        raise storage_error(path, op, err) from err


class VhdxFile:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.overlay: dict[int, bytes] = {}  # 4 KiB-aligned offset → sector (read-only replay)
        self._cached = CachedReads(fd)

    @classmethod
    def open(cls, path: Path, writable: bool) -> VhdxFile:
        with os_errors(path, "open"):
            return cls(path, os.open(path, os.O_RDWR if writable else os.O_RDONLY))

    @classmethod
    def create(cls, path: Path) -> VhdxFile:
        """A new, empty file; an existing one is never overwritten.

        :raises ConflictError: the file exists.
        """
        try:
            return cls(path, create_new(path))
        except OSError as err:
            raise UsageError(f"{path}: cannot create: {err.strerror}") from err

    def pread(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes; past the end of the file they read as zeros."""
        with os_errors(self.path, "read"):
            data = os.pread(self.fd, length, offset)
            while len(data) < length:
                more = os.pread(self.fd, length - len(data), offset + len(data))
                if not more:
                    data += bytes(length - len(data))
                    break
                data += more
        return self._apply_overlay(offset, data) if self.overlay else data

    def pread_cached(self, offset: int, length: int) -> bytes | None:
        """Like :meth:`pread` if the page cache holds the range now, else None (see
        :class:`~pyhv.storage.fileio.CachedReads`)."""
        data = self._cached.read(offset, length)
        if data is None or not self.overlay:
            return data
        return self._apply_overlay(offset, bytes(data))

    def _apply_overlay(self, offset: int, data: bytes) -> bytes:
        buf: bytearray | None = None
        end = offset + len(data)
        for at, content in self.overlay.items():
            if at < end and offset < at + OVERLAY_SECTOR:
                if buf is None:
                    buf = bytearray(data)
                lo, hi = max(offset, at), min(end, at + OVERLAY_SECTOR)
                buf[lo - offset : hi - offset] = content[lo - at : hi - at]
        return bytes(buf) if buf is not None else data

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        # No context manager and no view for the usual single ``pwrite``: this runs for every
        # write request.
        try:
            n = os.pwrite(self.fd, data, offset)
            if n < len(data):  # a signal or a nearly full disk: write the rest
                view, offset = memoryview(data)[n:], offset + n
                while view:
                    n = os.pwrite(self.fd, view, offset)
                    view, offset = view[n:], offset + n
        except OSError as err:
            raise storage_error(self.path, "write", err) from err

    def write_zeros(self, offset: int, length: int) -> None:
        """Zeros in bounded pieces (a corrupt length must not allocate gigabytes)."""
        for at in range(offset, offset + length, MiB):
            self.pwrite(at, bytes(min(MiB, offset + length - at)))

    def sync(self, data_only: bool = False) -> None:
        with os_errors(self.path, "flush"):
            (os.fdatasync if data_only else os.fsync)(self.fd)

    def truncate(self, size: int) -> None:
        with os_errors(self.path, "resize file"):
            os.ftruncate(self.fd, size)

    def preallocate(self, offset: int, length: int) -> None:
        """Fixed disks own their space; file systems without fallocate keep a sparse file."""
        try:
            os.posix_fallocate(self.fd, offset, length)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                with os_errors(self.path, "allocate"):
                    raise

    def punch(self, offset: int, length: int) -> None:
        """Give the range's space back to the file system (it reads as zeros); a no-op where
        the file system cannot."""
        with os_errors(self.path, "deallocate"):
            punch_hole(self.fd, offset, length)

    def size(self) -> int:
        with os_errors(self.path, "stat"):
            return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        # An image dropped without close() must not keep the file open (and look "in use").
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
