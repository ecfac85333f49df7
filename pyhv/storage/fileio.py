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
