"""The disk image protocol every format implements, and the values it hands out.

Everything above the formats (chains, operations, the NBD provider, the CLI) uses images only
through :class:`DiskImage`; none of it imports a format class.

Contract for implementers:

* ``read``/``write`` take any byte offset and length inside ``[0, size)``; past the end raises
  :class:`~pyhv.errors.OutOfBounds`. Unaligned I/O is handled by the format (read-modify-write).
* ``write`` returns only when the data is in the kernel (``os.pwrite`` done); ``flush`` makes
  data *and* metadata durable (fsync) in an order that keeps the image readable after a crash.
* One image object is safe to use from several threads at once.
* ``extents(offset, length, chain=True)`` describes allocation: with ``chain=True`` every byte is
  DATA or ZERO as seen through the whole chain; with ``chain=False`` only this layer is
  described and ranges this layer does not hold are BACKING (for images without a parent,
  unallocated ranges are ZERO). Adjacent extents of the same state are merged.
* ``discard``: afterwards the range reads as zeros or as its previous content, nothing else; in
  a differencing image it never exposes the parent where this layer had data.
"""

from __future__ import annotations

import enum
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pyhv.errors import OutOfBounds

if TYPE_CHECKING:
    from pyhv.storage.locks import FileLock


class ImageFormat(enum.StrEnum):
    VHD = "vhd"
    VHDX = "vhdx"
    RAW = "raw"


class DiskType(enum.StrEnum):
    FIXED = "fixed"
    DYNAMIC = "dynamic"
    DIFFERENCING = "differencing"


class ExtentState(enum.StrEnum):
    DATA = "data"  # holds data (may happen to be zeros)
    ZERO = "zero"  # reads as zeros without being stored
    BACKING = "backing"  # not in this layer: read from the parent (chain=False only)


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    state: ExtentState

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass
class ImageInfo:
    """What ``pyhv vhd info`` shows (Get-VHD's fields), for one layer."""

    path: str
    format: ImageFormat
    disk_type: DiskType
    size: int
    file_size: int
    minimum_size: int
    block_size: int
    logical_sector_size: int
    physical_sector_size: int
    identifier: str  # VHD UniqueId / VHDX Page83 disk id, as a UUID string ("" for raw)
    parent_path: str | None = None
    allocated_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateSpec:
    """Arguments of ``pyhv vhd new`` after validation of units (not of format limits)."""

    size: int
    disk_type: DiskType = DiskType.DYNAMIC
    block_size: int | None = None  # None: the format's default
    logical_sector_size: int = 512
    physical_sector_size: int | None = None  # None: the format's default
    parent: str | None = None  # differencing: path of the parent (size comes from it)


def merge_extents(extents: Iterator[Extent] | list[Extent]) -> list[Extent]:
    """Coalesce adjacent extents of the same state (the protocol promises merged extents)."""
    out: list[Extent] = []
    for e in extents:
        if e.length <= 0:
            continue
        if out and out[-1].state == e.state and out[-1].end == e.offset:
            prev = out.pop()
            e = Extent(prev.offset, prev.length + e.length, e.state)
        out.append(e)
    return out


class DiskImage(ABC):
    """An open image of any format; a context manager."""

    format: ImageFormat
    disk_type: DiskType
    path: Path
    writable: bool
    parent: DiskImage | None = None
    file_lock: FileLock | None = None  # set by the chain layer; released on close

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closed = False

    # -- geometry ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def size(self) -> int: ...

    @property
    def logical_sector_size(self) -> int:
        return 512

    @property
    def physical_sector_size(self) -> int:
        return 512

    @property
    def block_size(self) -> int:
        """Allocation unit in bytes; 0 when the format has none (raw, fixed VHD)."""
        return 0

    # -- identity (differencing chains) -------------------------------------------------------
    @property
    def identity(self) -> bytes:
        """What a child records to bind itself to this image (VHD UniqueId, VHDX DataWriteGuid)."""
        return b""

    def settle_identity(self) -> None:
        """Make :attr:`identity` final for as long as this image stays open, so a child made
        now stays bound to it however the image is written later. Default: it is already."""
        return

    # -- I/O ----------------------------------------------------------------------------------
    @abstractmethod
    def read(self, offset: int, length: int) -> bytes: ...

    def read_cached(self, offset: int, length: int) -> bytes | None:
        """The data if it can be had without blocking (page cache, no lock to wait for), else
        None, and then :meth:`read` must be used (in a thread).

        Why: the NBD provider serves cached reads on its event loop instead of paying a thread
        hand-off per request. Never raises for I/O errors or bad ranges: None hands those to
        :meth:`read`, which reports them. Default: never cached.
        """
        return None

    @abstractmethod
    def write(self, offset: int, data: bytes) -> None: ...

    @abstractmethod
    def flush(self) -> None: ...

    def discard(self, offset: int, length: int) -> None:
        """Default: nothing is freed, which the contract allows."""
        self.check_range(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Default: write real zeros in bounded pieces; formats may mark blocks zero instead."""
        self.check_range(offset, length)
        step = 1 << 20
        pos = offset
        while pos < offset + length:
            n = min(step, offset + length - pos)
            self.write(pos, bytes(n))
            pos += n

    @abstractmethod
    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]: ...

    @abstractmethod
    def info(self) -> ImageInfo: ...

    # -- lifecycle ----------------------------------------------------------------------------
    @abstractmethod
    def _close(self) -> None: ...

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._close()
        finally:
            if self.file_lock is not None:
                self.file_lock.release()
            if self.parent is not None:
                self.parent.close()

    def __enter__(self) -> DiskImage:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- helpers for implementers -------------------------------------------------------------
    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfBounds(
                f"{self.path}: range {offset}+{length} is outside the disk (size {self.size})"
            )

    def cached_range_ok(self, offset: int, length: int) -> bool:
        """:meth:`read_cached`'s guard: open and in range; otherwise it answers None and
        :meth:`read` reports the error."""
        return not self.closed and offset >= 0 and length >= 0 and offset + length <= self.size

    @staticmethod
    def join_cached(parts: Iterable[bytes | None]) -> bytes | None:
        """The pieces a :meth:`read_cached` walk yields, joined; None as soon as one is None
        (the walk stops there). A single piece comes back as it is, without a copy."""
        out: list[bytes] = []
        for part in parts:
            if part is None:
                return None
            out.append(part)
        return out[0] if len(out) == 1 else b"".join(out)

    def chain(self) -> list[DiskImage]:
        """This image followed by its ancestors, nearest first."""
        out: list[DiskImage] = []
        img: DiskImage | None = self
        while img is not None:
            out.append(img)
            img = img.parent
        return out
