"""Thin file-descriptor helpers shared by the image formats: exact reads, hole punching, holes.

OS errors are translated here, once, into :class:`~pyhv.errors.StorageError` lines that name the
file, so no format has to catch ``OSError`` itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from pyhv.errors import ConflictError, StorageError

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


@contextmanager
def os_errors(path: Path | str, op: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into one StorageError line naming the file and the step."""
    try:
        yield
    except OSError as e:
        raise StorageError(f"{path}: {op} failed: {e.strerror or e}") from e


def create_new(path: Path) -> int:
    """Open a new file for writing; an existing file is never overwritten.

    :raises ConflictError: the file exists.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as e:
        raise ConflictError(f"{path} already exists; remove it or pick another name") from e


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read exactly ``length`` bytes; bytes past EOF read as zeros (sparse or truncated tails)."""
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            parts.append(bytes(length - got))
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class CachedReads:
    """``pread`` that never waits for the disk: ``os.preadv`` with ``RWF_NOWAIT`` on one fd.

    Why: the NBD provider answers reads the page cache holds on its event loop, which saves
    the thread hand-off that dominates a 4 KiB request; anything that would block goes to a
    thread. A file system that does not support the flag is asked once, then never again.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.supported = hasattr(os, "RWF_NOWAIT")

    def read(self, offset: int, length: int) -> bytes | None:
        """All ``length`` bytes if the page cache has them now, else None.

        None also for a short read (partly cached, or end of file) and for any error: the
        blocking read that callers fall back to handles those and reports errors properly.
        The data is the ``bytearray`` it was read into, typed as bytes: nobody writes to it
        afterwards, so the copy ``bytes()`` would make buys nothing.
        """
        if not self.supported:
            return None
        buf = bytearray(length)
        try:
            n = os.preadv(self.fd, [buf], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                self.supported = False
            return None
        return cast(bytes, buf) if n == length else None


def pread_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the file; past EOF it is left as is (callers pass zeroed buffers)."""
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            return
        view = view[n:]
        offset += n


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a range (it then reads as zeros); False when the file system cannot."""
    if length <= 0:
        return True
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def data_runs(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the ranges in ``[start, end)`` holding data (SEEK_DATA/SEEK_HOLE).

    File systems without hole support report everything as data, which is always correct.
    """
    runs: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole up to EOF
                break
            return [(start, end - start)]
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        runs.append((data, hole - data))
        pos = hole
    return runs
