"""One NBD export: the image behind a name, its counters, and the gate that lets it be swapped.

The gate counts requests in flight on the image. ``quiesce()`` closes it (new requests wait)
and returns once the count is zero, so the image can be swapped (checkpoints) or dropped
(disk removal) while no thread is inside it; ``reopen()`` lets the held requests go on.
All of this runs on the event loop thread.

A FLUSH with no write completed since the last flush does nothing (QEMU's block layer does
the same with its write generations): QEMU flushes every disk when it stops a guest, and a
checkpoint then flushes each one again before it swaps it (:meth:`NbdServer.flush`); the
second finds it clean instead of paying an fsync, which waits behind whatever else the host
is writing (up to tens of ms inside the checkpoint's pause here).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from pyhv.errors import ConfigError
from pyhv.storage.image import DiskImage
from pyhv.storage.nbd import protocol as p
from pyhv.storage.nbd.handshake import ExportInfo
from pyhv.storage.nbd.stats import ExportStats

if TYPE_CHECKING:
    from pyhv.storage.nbd.connection import Connection


def transmission_flags(read_only: bool) -> int:
    """Flags sent in NBD_INFO_EXPORT ("Transmission flags").

    CAN_MULTI_CONN is safe because every connection to an export shares one image object:
    a write is acknowledged only once it is in the kernel, and FLUSH fsyncs the image's files,
    so a flush on any connection covers writes completed on all of them (what the flag
    promises).
    """
    flags = p.NBD_FLAG_HAS_FLAGS | p.NBD_FLAG_SEND_FLUSH | p.NBD_FLAG_CAN_MULTI_CONN
    if read_only:
        return flags | p.NBD_FLAG_READ_ONLY
    return flags | p.NBD_FLAG_SEND_FUA | p.NBD_FLAG_SEND_TRIM | p.NBD_FLAG_SEND_WRITE_ZEROES


def minimum_block(image: DiskImage) -> int:
    """NBD_INFO_BLOCK_SIZE minimum: byte-granular where the image is a plain file (raw, fixed).

    Formats with allocation units do unaligned writes by read-modify-write under a lock, so
    there we ask the client to align to the logical sector itself.
    """
    return 1 if image.block_size == 0 else image.logical_sector_size


class Export:
    """An image served under ``name``; see the module docstring for the gate."""

    def __init__(self, name: str, image: DiskImage, read_only: bool) -> None:
        if not name or len(name.encode()) > p.MAX_STRING:
            raise ConfigError(f"nbd: invalid export name {name!r}: 1 to {p.MAX_STRING} bytes")
        if not read_only and not image.writable:
            raise ConfigError(f"nbd: export {name!r}: image {image.path} is open read-only")
        self.name = name
        self.image = image
        self.read_only = read_only
        self.info = ExportInfo(
            name, image.size, transmission_flags(read_only), minimum_block(image)
        )
        self.stats = ExportStats()
        self.connections: set[Connection] = set()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._generation = threading.Lock()
        self._written = 1  # a new image may hold writes of its own: the first flush is real
        self._flushed = 0

    def wrote(self) -> None:
        """A write (or trim, write-zeroes) returned from the image (any thread)."""
        with self._generation:
            self._written += 1

    def flush(self) -> None:
        """Flush the image unless nothing was written since the last flush (any thread)."""
        with self._generation:
            covers = self._written
        if covers == self._flushed:
            return
        self.image.flush()
        with self._generation:
            self._flushed = max(self._flushed, covers)

    def replace_image(self, image: DiskImage) -> DiskImage:
        """Serve ``image`` from now on (the gate closed); returns the previous one."""
        old, self.image = self.image, image
        with self._generation:
            self._written += 1
        return old

    def try_begin(self) -> bool:
        """Count a request in; False while the gate is closed (then await :meth:`wait_open`)."""
        if not self._open.is_set():
            return False
        self.in_flight += 1
        self._idle.clear()
        return True

    async def wait_open(self) -> None:
        await self._open.wait()

    def end(self) -> None:
        """Count a request out (its image call has returned)."""
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def quiesce(self) -> None:
        """Close the gate and wait until no request is inside the image."""
        self._open.clear()
        await self._idle.wait()

    def reopen(self) -> None:
        self._open.set()
