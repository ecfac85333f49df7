"""A writer for the cpio "newc" format the Linux kernel unpacks as its initramfs; no I/O.

Written here rather than by running ``cpio`` so the kit can place device nodes (``/dev/console``)
and root-owned files without privileges, and so two builds of the same inputs give the same
bytes (every mtime is 0).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Entry:
    """One archive member; ``mode`` carries the type bits (``stat.S_IFREG | 0o755``…).

    ``data`` is the content of a regular file or the target of a symlink; ``rdev`` is the
    (major, minor) of a device node.
    """

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.path.startswith("/") or not self.path or "\0" in self.path:
            raise ValueError(f"cpio member name must be relative and non-empty: {self.path!r}")
        if self.data and not (stat.S_ISREG(self.mode) or stat.S_ISLNK(self.mode)):
            raise ValueError(f"only files and symlinks carry data: {self.path!r}")


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime
        len(entry.data),
        0,  # devmajor
        0,  # devminor
        entry.rdev[0],
        entry.rdev[1],
        len(name) + 1,
        0,  # check
    )
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode()
    head = _header(ino, entry, name) + name + b"\0"
    return head + _pad(len(head)) + entry.data + _pad(len(entry.data))


def write(entries: Iterable[Entry], out: Writer) -> None:
    """Write ``entries`` in the given order, then the trailer; parents must precede children."""
    ino = 0
    for ino, entry in enumerate(entries, start=1):
        out.write(_member(ino, entry))
    out.write(_member(ino + 1, Entry(TRAILER, 0)))


def read(data: bytes) -> list[Entry]:
    """Parse a newc archive back into entries (stops at the trailer); used to verify archives."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if data[pos : pos + 6] != MAGIC:
            raise ValueError(f"no newc header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmajor, rminor, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, body, (rmajor, rminor)))
