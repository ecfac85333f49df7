"""Which format a file holds, judged from its content alone (never from its name).

VHDX starts with ``vhdxfile``; dynamic and differencing VHD start with a footer copy
(``conectix``); a fixed VHD has nothing at its start, only the footer at EOF−512 (or EOF−511 in
images older than Virtual PC 2004). Anything else is raw.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pyhv.errors import InvalidFormat
from pyhv.storage.fileio import os_errors, pread_exact
from pyhv.storage.image import ImageFormat

VHDX_SIGNATURE = b"vhdxfile"
VHD_COOKIE = b"conectix"
_TAIL = 512
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
}


def classify(head: bytes, tail: bytes) -> ImageFormat:
    """Format from the first 8 bytes and the last 512 bytes of a file (pure)."""
    if head.startswith(VHDX_SIGNATURE):
        return ImageFormat.VHDX
    if head.startswith(VHD_COOKIE):
        return ImageFormat.VHD
    if len(tail) == _TAIL and (tail.startswith(VHD_COOKIE) or tail[1:].startswith(VHD_COOKIE)):
        return ImageFormat.VHD
    return ImageFormat.RAW


def detect_format(path: str | os.PathLike[str]) -> ImageFormat:
    """Format of the file at ``path``.

    :raises InvalidFormat: a directory, FIFO, socket or character device.
    :raises StorageError: when the file cannot be read.
    """
    p = Path(path)
    with os_errors(p, "open"):
        mode = os.stat(p).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        # a FIFO would block the open forever, and no other kind of file holds a disk
        raise InvalidFormat(
            f"{p} is {_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a disk image"
        )
    with os_errors(p, "open"):
        fd = os.open(p, os.O_RDONLY)
    try:
        with os_errors(p, "read"):
            size = os.lseek(fd, 0, os.SEEK_END)  # st_size is 0 for block devices
            head = pread_exact(fd, min(8, size), 0)
            tail = pread_exact(fd, _TAIL, size - _TAIL) if size >= _TAIL else b""
    finally:
        os.close(fd)
    return classify(head, tail)
