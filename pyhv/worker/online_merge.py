"""Merging the differencing disk a running VM writes into its parent while the guest runs.

The disk's export switches to a :class:`MirrorImage`: reads come from the child's chain as
before, and every write goes to the child and, under one lock, to the parent too. A copy
thread then copies every range the child holds into the parent, one chunk at a time under
that same lock, so a guest write never lands between a chunk's read and its write. Once the
copy is done the parent shows exactly what the child shows; the export switches to the
parent (in-flight requests drain first, the guest is not stopped), and the child is closed
and deleted.

Crash safety is that of the offline merge (:mod:`pyhv.storage.operations.merge`): every
byte written into the parent is the byte the child shows there, so the child's view never
changes, and the child is deleted only after the parent is flushed.
"""

from __future__ import annotations

import threading

from pyhv.storage import DiskImage, Extent, ImageInfo
from pyhv.storage.operations.merge import held_ranges

CHUNK_BYTES = 1 << 20


class MirrorImage(DiskImage):
    """The child as the export sees it, with every change mirrored into ``target``.

    Closing it closes the child (and its chain); ``target`` stays open for its owner.
    """

    def __init__(self, child: DiskImage, target: DiskImage) -> None:
        super().__init__()
        self.child = child
        self.target = target
        self.format = child.format
        self.disk_type = child.disk_type
        self.path = child.path
        self.writable = True
        self.mirror_lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.child.size

    @property
    def logical_sector_size(self) -> int:
        return self.child.logical_sector_size

    @property
    def physical_sector_size(self) -> int:
        return self.child.physical_sector_size

    @property
    def block_size(self) -> int:
        return self.child.block_size

    @property
    def identity(self) -> bytes:
        return self.child.identity

    def read(self, offset: int, length: int) -> bytes:
        return self.child.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        with self.mirror_lock:
            self.child.write(offset, data)
            self.target.write(offset, data)

    def write_zeroes(self, offset: int, length: int) -> None:
        with self.mirror_lock:
            self.child.write_zeroes(offset, length)
            self.target.write_zeroes(offset, length)

    def discard(self, offset: int, length: int) -> None:
        with self.mirror_lock:
            self.child.discard(offset, length)
            self.target.discard(offset, length)

    def flush(self) -> None:
        self.child.flush()
        self.target.flush()

    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        return self.child.extents(offset, length, chain=chain)

    def info(self) -> ImageInfo:
        return self.child.info()

    def _close(self) -> None:
        self.child.close()


def copy_into_target(mirror: MirrorImage) -> int:
    """Copy every range the child holds into the target; returns the bytes copied.

    Runs in a thread while the guest writes through ``mirror``.
    """
    copied = 0
    for offset, length in held_ranges([mirror.child]):
        end = offset + length
        for pos in range(offset, end, CHUNK_BYTES):
            n = min(CHUNK_BYTES, end - pos)
            with mirror.mirror_lock:
                mirror.target.write(pos, mirror.child.read(pos, n))
            copied += n
    mirror.target.flush()
    return copied
