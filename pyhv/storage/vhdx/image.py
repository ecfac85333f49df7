"""VhdxImage: a VHDX disk image (fixed, dynamic or differencing) open for reading or writing.

# Ref: [MS-VHDX] §2. Open: file identifier → headers → log replay (:mod:`.journal`) →
region table, metadata, BAT (:mod:`.layout`); the BAT stays in memory.

A read-only open never touches the file, even with a pending log: the replay goes into an
in-memory overlay that every read consults, so readers see exactly what a writable open would
have produced. A writable open replays into the file.

Writes: payload goes straight to its block; a new block is placed at the 1 MiB aligned end of
the file. BAT and sector-bitmap changes collect in memory and are committed by :meth:`flush`
(or when many are pending) as one log transaction, so a crash at any point leaves the old or the
new state: uncommitted blocks are just unreferenced space.

Locking: ``self.lock`` guards the BAT, bitmaps and the journal; ``self._io`` is shared by data
I/O and taken exclusively by block moves (resize, compact), so reads of allocated blocks run in
parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pyhv.errors import CorruptImage, InvalidFormat, OutOfBounds, ParentError, StateError
from pyhv.storage.image import (
    DiskImage,
    DiskType,
    Extent,
    ExtentState,
    ImageFormat,
    ImageInfo,
    merge_extents,
)
from pyhv.storage.vhdx import bat as batlib
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import maintain
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.storage.vhdx.io import Run, Source, map_range
from pyhv.storage.vhdx.journal import Journal
from pyhv.storage.vhdx.layout import Layout, load_layout
from pyhv.storage.vhdx.metadata import DiskParams
from pyhv.storage.vhdx.parent import candidate_paths, linkage_identity
from pyhv.storage.vhdx.region import RegionTable
from pyhv.storage.vhdx.rwlock import SharedExclusiveLock
from pyhv.units import MiB

SECTOR = s.LOG_SECTOR_SIZE
# Plain ints for the per-request read path (IntEnum comparisons cost more).
_FULLY_PRESENT = int(s.PayloadState.FULLY_PRESENT)
_PARTIALLY_PRESENT = int(s.PayloadState.PARTIALLY_PRESENT)
_NOT_PRESENT = int(s.PayloadState.NOT_PRESENT)

# Pending metadata sectors that trigger a commit before more are added (well under what one
# entry of the smallest, 1 MiB, log holds).
COMMIT_THRESHOLD_SECTORS = 64


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class VhdxImage(DiskImage):
    format = ImageFormat.VHDX

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__()
        self.path = Path(path)
        self.writable = writable
        self._io = SharedExclusiveLock()
        self._dirty_bat: set[int] = set()  # BAT sector numbers
        self._dirty_bitmap: set[tuple[int, int]] = set()  # (chunk, sector in bitmap block)
        self._bitmaps: dict[int, bytearray] = {}
        self.file = VhdxFile.open(self.path, writable)
        try:
            self._load()
        except BaseException:
            self.file.close()
            self.closed = True
            raise

    def _load(self) -> None:
        size = self.file.size()
        if size < s.HEADER_SECTION_SIZE:
            if self.file.pread(0, 8) != s.FILE_IDENTIFIER_SIGNATURE:
                raise InvalidFormat(f"{self.path}: not a VHDX file")
            raise CorruptImage(f"{self.path}: VHDX file truncated to {size} bytes")
        self.creator = hdr.parse_file_identifier(self.file.pread(0, 520))
        self.journal = Journal(self.file, self.writable)
        size = self.journal.replay(size)
        self.layout: Layout = load_layout(self.file, self.journal.header, size)

    # -- the parsed structures ------------------------------------------------------------------
    @property
    def header(self) -> hdr.Header:
        return self.journal.header

    @property
    def params(self) -> DiskParams:
        return self.layout.params

    @property
    def geometry(self) -> batlib.BatGeometry:
        return self.layout.geometry

    @property
    def bat(self) -> list[int]:
        return self.layout.bat

    @property
    def regions(self) -> RegionTable:
        return self.layout.regions

    @property
    def keep_identity(self) -> bool:
        """Set by merge on the ancestor it writes into: what it writes is what the child already
        shows, so the child must stay linked (DataWriteGuid kept)."""
        return self.journal.keep_identity

    @keep_identity.setter
    def keep_identity(self, value: bool) -> None:
        self.journal.keep_identity = value

    def _require_writable(self) -> None:
        if self.closed:
            raise StateError(f"{self.path}: image is closed")
        if not self.writable:
            raise StateError(f"{self.path}: image is open read-only")

    def _transaction(self, sectors: dict[int, bytes], data: bool = True) -> None:
        self.journal.transaction(sectors, [], last_file_offset=self.layout.alloc_end, data=data)

    def _bat_sector(self, n: int) -> bytes:
        per = SECTOR // s.BAT_ENTRY_SIZE
        raw = batlib.pack_bat(self.bat[n * per : (n + 1) * per])
        return raw.ljust(SECTOR, b"\0")

    def _commit(self) -> None:
        with self.lock:
            if not self._dirty_bat and not self._dirty_bitmap:
                return
            sectors = {
                self.regions.bat.file_offset + n * SECTOR: self._bat_sector(n)
                for n in self._dirty_bat
            }
            for chunk, n in self._dirty_bitmap:
                entry = self.bat[self.geometry.bitmap_index(chunk)]
                bitmap = self._bitmaps[chunk]
                sectors[batlib.entry_offset(entry) + n * SECTOR] = bytes(
                    bitmap[n * SECTOR : (n + 1) * SECTOR]
                )
            self._transaction(sectors)
            self._dirty_bat.clear()
            self._dirty_bitmap.clear()

    def _set_entry(self, index: int, value: int) -> None:
        self.bat[index] = value
        self._dirty_bat.add(index * s.BAT_ENTRY_SIZE // SECTOR)

    def _release_block(self, block: int, entry: int) -> None:
        """Give up a block's storage: its file space goes back to the file system at once (a
        crash before the BAT commit then shows zeros there, which discard and write_zeroes
        allow). Sector-bitmap bits are cleared too, so a later partial allocation of the block
        does not inherit stale "present" sectors."""
        index = self.geometry.payload_index(block)
        old = self.bat[index]
        self._set_entry(index, entry)
        if old & s.BAT_STATE_MASK in batlib.PRESENT_STATES:
            self.file.punch(batlib.entry_offset(old), self.geometry.block_size)
        chunk, byte0 = self.geometry.bitmap_location(block)
        index = self.geometry.bitmap_index(chunk)
        if self.params.has_parent and self.bat[index] & s.BAT_STATE_MASK == s.BitmapState.PRESENT:
            nbytes = self.geometry.sectors_per_block // 8
            bitmap = self._bitmap(chunk)
            if bitmap.count(0, byte0, byte0 + nbytes) != nbytes:
                bitmap[byte0 : byte0 + nbytes] = bytes(nbytes)
                for n in range(byte0 // SECTOR, (byte0 + nbytes - 1) // SECTOR + 1):
                    self._dirty_bitmap.add((chunk, n))

    def _maybe_commit(self) -> None:
        if len(self._dirty_bat) + len(self._dirty_bitmap) >= COMMIT_THRESHOLD_SECTORS:
            self._commit()

    # -- geometry and identity ----------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.params.virtual_size

    @property
    def logical_sector_size(self) -> int:
        return self.params.logical_sector_size

    @property
    def physical_sector_size(self) -> int:
        return self.params.physical_sector_size

    @property
    def block_size(self) -> int:
        return self.params.block_size

    @property
    def disk_type(self) -> DiskType:  # type: ignore[override]
        if self.params.has_parent:
            return DiskType.DIFFERENCING
        return DiskType.FIXED if self.params.leave_block_allocated else DiskType.DYNAMIC

    @property
    def identity(self) -> bytes:
        return self.header.data_write_guid.bytes_le

    def settle_identity(self) -> None:
        """A VHDX takes a new DataWriteGuid at its first data write after it was opened: take
        it now (a checkpoint makes the children of a running VM's disks before it stops the
        guest, and a guest write in between would otherwise unbind them)."""
        if self.writable and not self.closed:
            self.journal.begin_session(data=True)

    # -- reading ------------------------------------------------------------------------------
    def _bitmap(self, chunk: int) -> bytearray:
        """The chunk's sector bitmap, cached; all zeros while the block is not present."""
        cached = self._bitmaps.get(chunk)
        if cached is None:
            entry = self.bat[self.geometry.bitmap_index(chunk)]
            if entry & s.BAT_STATE_MASK == s.BitmapState.PRESENT:
                raw = self.file.pread(batlib.entry_offset(entry), s.SECTOR_BITMAP_BLOCK_SIZE)
                cached = bytearray(raw)
            else:
                cached = bytearray(s.SECTOR_BITMAP_BLOCK_SIZE)
            self._bitmaps[chunk] = cached
        return cached

    def _map(self, offset: int, length: int) -> list[Run]:
        with self.lock:
            return map_range(self.geometry, self.bat, offset, length, self._bitmap)

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        with self._io.shared():
            parts = [self._read_run(run) for run in self._map(offset, length)]
        return b"".join(parts)

    def read_cached(self, offset: int, length: int) -> bytes | None:
        """Without waiting: fully present blocks from the page cache, zero blocks as zeros,
        absent blocks of a differencing disk from the parent's ``read_cached``; None when any
        piece would block or is partially present (its sector bitmap needs ``self.lock``).

        The BAT entry is read without ``self.lock``, as ``_write_in_block`` does: a block
        becomes FULLY_PRESENT only after its data is written, and one that is released while
        we read reads as its old data or zeros, which discard allows. Block moves (compact,
        resize) are caught by ``self._io``'s stamp: what was read across one is dropped.
        """
        stamp = self._io.stamp()
        if stamp is None or not self.cached_range_ok(offset, length):
            return None
        try:
            data = self.join_cached(self._cached_pieces(offset, length))
        except IndexError:  # a shrink under way replaced the BAT: the stamp drops this anyway
            return None
        return data if self._io.unchanged(stamp) else None

    def _cached_pieces(self, offset: int, length: int) -> Iterator[bytes | None]:
        layout = self.layout
        bat = layout.bat
        g = layout.geometry
        bs, ratio = g.block_size, g.chunk_ratio
        pos, end = offset, offset + length
        while pos < end:
            block, in_block = divmod(pos, bs)
            n = min(bs - in_block, end - pos)
            entry = bat[block + block // ratio]  # g.payload_index(block), inlined
            state = entry & s.BAT_STATE_MASK
            if state == _FULLY_PRESENT:
                yield self.file.pread_cached(batlib.entry_offset(entry) + in_block, n)
            elif state == _PARTIALLY_PRESENT:
                yield None  # the sector bitmap needs self.lock: read()'s job
            elif state == _NOT_PRESENT and g.has_parent:
                yield None if self.parent is None else self.parent.read_cached(pos, n)
            else:  # as map_range: ZERO, UNMAPPED, UNDEFINED, NOT_PRESENT without a parent
                yield bytes(n)
            pos += n

    def _read_run(self, run: Run) -> bytes:
        if run.source is Source.FILE:
            return self.file.pread(run.file_offset, run.length)
        if run.source is Source.ZERO:
            return bytes(run.length)
        if self.parent is None:
            raise ParentError(f"{self.path}: differencing disk read without its parent attached")
        return self.parent.read(run.offset, run.length)

    # -- writing ------------------------------------------------------------------------------
    def write(self, offset: int, data: bytes) -> None:
        self._require_writable()
        self.check_range(offset, len(data))
        if not data:
            return
        if self.params.has_parent:
            offset, data = self._align_to_sectors(offset, bytes(data))
        self.journal.begin_session()
        view = memoryview(data)
        bs = self.block_size
        with self._io.shared():
            pos = 0
            while pos < len(view):
                block, in_block = divmod(offset + pos, bs)
                n = min(bs - in_block, len(view) - pos)
                self._write_in_block(block, in_block, view[pos : pos + n])
                pos += n

    def _align_to_sectors(self, offset: int, data: bytes) -> tuple[int, bytes]:
        """Differencing disks track presence per logical sector, so partial sectors are
        completed from what the chain reads there now."""
        lss = self.logical_sector_size
        head = offset % lss
        tail = -(offset + len(data)) % lss
        if not head and not tail:
            return offset, data
        start, end = offset - head, offset + len(data) + tail
        if end - start <= 2 * lss:
            current = self.read(start, end - start)
            return start, current[:head] + data + current[len(current) - tail :]
        first = self.read(start, lss) if head else b""
        last = self.read(end - lss, lss) if tail else b""
        return start, first[:head] + data + last[lss - tail :]

    def _write_in_block(self, block: int, in_block: int, data: memoryview) -> None:
        g = self.geometry
        index = g.payload_index(block)
        entry = self.bat[index]
        state = entry & s.BAT_STATE_MASK
        if state == s.PayloadState.FULLY_PRESENT:
            self.file.pwrite(batlib.entry_offset(entry) + in_block, data)
            return
        with self.lock:
            entry = self.bat[index]
            state = entry & s.BAT_STATE_MASK
            if state == s.PayloadState.FULLY_PRESENT:
                self.file.pwrite(batlib.entry_offset(entry) + in_block, data)
                return
            if state == s.PayloadState.PARTIALLY_PRESENT:
                self.file.pwrite(batlib.entry_offset(entry) + in_block, data)
                self._mark_present(block, in_block, len(data))
                return
            whole = in_block == 0 and len(data) == g.block_data_length(block)
            partial = state == s.PayloadState.NOT_PRESENT and self.params.has_parent and not whole
            if partial:
                self._ensure_bitmap_block(block)
            offset = self._allocate(g.block_size)
            self.file.pwrite(offset + in_block, data)
            if partial:
                self._set_entry(index, batlib.pack_entry(s.PayloadState.PARTIALLY_PRESENT, offset))
                self._mark_present(block, in_block, len(data))
            else:
                self._set_entry(index, batlib.pack_entry(s.PayloadState.FULLY_PRESENT, offset))
            self._maybe_commit()

    def _allocate(self, length: int) -> int:
        """Space for a new block at the aligned end of the file (zero-filled, sparse)."""
        offset = self.layout.alloc_end
        self.layout.alloc_end = offset + round_up(length, MiB)
        self.file.truncate(self.layout.alloc_end)
        return offset

    def _ensure_bitmap_block(self, block: int) -> None:
        chunk, _ = self.geometry.bitmap_location(block)
        index = self.geometry.bitmap_index(chunk)
        if self.bat[index] & s.BAT_STATE_MASK != s.BitmapState.PRESENT:
            self._bitmap(chunk)  # cache the all-zero bitmap before the entry changes
            offset = self._allocate(s.SECTOR_BITMAP_BLOCK_SIZE)
            self._set_entry(index, batlib.pack_entry(s.BitmapState.PRESENT, offset))

    def _mark_present(self, block: int, in_block: int, length: int) -> None:
        lss = self.logical_sector_size
        chunk, byte0 = self.geometry.bitmap_location(block)
        first = byte0 * 8 + in_block // lss
        count = -(-(in_block + length) // lss) - in_block // lss
        bitmap = self._bitmap(chunk)
        batlib.set_bitmap_bits(bitmap, first, count)
        first_sector = first // 8 // SECTOR
        last_sector = (first + count - 1) // 8 // SECTOR
        for n in range(first_sector, last_sector + 1):
            self._dirty_bitmap.add((chunk, n))
        # Once every sector is here the block no longer needs its bitmap: readers take the
        # FULLY_PRESENT fast path (bits stay set, as the spec allows).
        used = self.geometry.block_data_length(block) // lss
        if bitmap.count(0xFF, byte0, byte0 + used // 8) == used // 8 and not used % 8:
            index = self.geometry.payload_index(block)
            offset = batlib.entry_offset(self.bat[index])
            self._set_entry(index, batlib.pack_entry(s.PayloadState.FULLY_PRESENT, offset))

    def flush(self) -> None:
        if not self.writable or self.closed:
            return
        with self._io.shared():
            self._commit()
            self.file.sync()

    def write_zeroes(self, offset: int, length: int) -> None:
        """Whole blocks become ZERO (no data stored); edges are written only where the disk
        does not already read zeros without storage."""
        self._require_writable()
        self.check_range(offset, length)
        self._zero_range(offset, length, discard=False)

    def discard(self, offset: int, length: int) -> None:
        """Whole blocks are released (fixed disks keep theirs); partial blocks stay as they
        are, which the protocol allows."""
        self._require_writable()
        self.check_range(offset, length)
        if self.disk_type is not DiskType.FIXED:
            self._zero_range(offset, length, discard=True)

    def _zero_range(self, offset: int, length: int, discard: bool) -> None:
        g = self.geometry
        end = offset + length
        pos = offset
        while pos < end:
            block, in_block = divmod(pos, g.block_size)
            n = min(g.block_size - in_block, end - pos)
            whole = in_block == 0 and n == g.block_data_length(block)
            if whole and self.disk_type is not DiskType.FIXED:
                self.journal.begin_session()
                with self._io.shared(), self.lock:
                    self._release_block(block, self._zero_entry())
                    self._maybe_commit()
            elif not discard and self._stores_data(block):
                self.write(pos, bytes(n))
            pos += n

    def _zero_entry(self) -> int:
        # A differencing disk must not expose its parent here, so NOT_PRESENT is not an option.
        if self.params.has_parent:
            return batlib.pack_entry(s.PayloadState.ZERO)
        return batlib.pack_entry(s.PayloadState.NOT_PRESENT)

    def _stores_data(self, block: int) -> bool:
        """Whether the block may read non-zero without a write (stored data or parent data)."""
        state = self.bat[self.geometry.payload_index(block)] & s.BAT_STATE_MASK
        if state in batlib.PRESENT_STATES:
            return True
        return state == s.PayloadState.NOT_PRESENT and self.params.has_parent

    # -- allocation map -----------------------------------------------------------------------
    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        if length is None:
            length = self.size - offset
        self.check_range(offset, length)
        out: list[Extent] = []
        for run in self._map(offset, length):
            if run.source is Source.FILE:
                out.append(Extent(run.offset, run.length, ExtentState.DATA))
            elif run.source is Source.ZERO:
                out.append(Extent(run.offset, run.length, ExtentState.ZERO))
            elif not chain:
                out.append(Extent(run.offset, run.length, ExtentState.BACKING))
            elif self.parent is None:
                raise ParentError(f"{self.path}: differencing disk used without its parent")
            else:
                out.extend(self.parent.extents(run.offset, run.length, chain=True))
        return merge_extents(out)

    def _present_blocks(self) -> list[int]:
        return batlib.present_blocks(self.bat, self.geometry)

    def minimum_size(self) -> int:
        """Smallest size :meth:`resize` accepts: the end of the last allocated block."""
        present = self._present_blocks()
        if not present:
            return self.logical_sector_size
        end = min(self.size, (present[-1] + 1) * self.block_size)
        return round_up(end, self.logical_sector_size)

    def info(self) -> ImageInfo:
        with self.lock:
            present = self._present_blocks()
            return ImageInfo(
                path=str(self.path),
                format=ImageFormat.VHDX,
                disk_type=self.disk_type,
                size=self.size,
                file_size=self.file.size(),
                minimum_size=self.minimum_size(),
                block_size=self.block_size,
                logical_sector_size=self.logical_sector_size,
                physical_sector_size=self.physical_sector_size,
                identifier=str(self.params.page83_id),
                parent_path=str(self.parent.path) if self.parent is not None else None,
                allocated_bytes=sum(self.geometry.block_data_length(b) for b in present),
                extra={
                    "creator": self.creator,
                    "data_write_guid": str(self.header.data_write_guid),
                    "parent_locator": dict(self.params.parent_locator),
                },
            )

    # -- differencing -------------------------------------------------------------------------
    def parent_candidates(self) -> list[Path]:
        return candidate_paths(self.params.parent_locator, self.path)

    @property
    def parent_identity(self) -> bytes:
        return linkage_identity(self.params.parent_locator) or b""

    def accepts_parent_identity(self, identity: bytes) -> bool:
        """§2.6.2.6.3: the parent matches parent_linkage or, failing that, parent_linkage2."""
        loc = self.params.parent_locator
        return identity in (linkage_identity(loc), linkage_identity(loc, "parent_linkage2"))

    def attach_parent(self, parent: DiskImage) -> None:
        """:raises ParentError: when this is no differencing disk or the parent does not fit."""
        if not self.params.has_parent:
            raise ParentError(f"{self.path}: not a differencing disk")
        if parent.size != self.size:
            raise ParentError(
                f"{self.path}: parent {parent.path} is {parent.size} bytes, this disk {self.size}"
            )
        if parent.logical_sector_size != self.logical_sector_size:
            raise ParentError(
                f"{self.path}: parent {parent.path} has {parent.logical_sector_size}-byte "
                f"sectors, this disk {self.logical_sector_size}"
            )
        if not self.accepts_parent_identity(parent.identity):
            raise ParentError(
                f"{self.path}: {parent.path} is not its parent (identity mismatch; "
                "the parent changed after this disk was made)"
            )
        self.parent = parent

    # -- capabilities (pyhv.storage.formats.Resizable / Compactable) ---------------------------
    def resize(self, new_size: int) -> None:
        maintain.resize(self, new_size)

    def compact(self, progress: maintain.Progress | None = None) -> int:
        return maintain.compact(self, progress)

    def set_parent_locator(self, parent: DiskImage, parent_path: Path) -> None:
        maintain.set_parent_locator(self, parent, parent_path)

    # -- lifecycle ----------------------------------------------------------------------------
    def _close(self) -> None:
        try:
            if self.writable:
                self._commit()
                self.journal.end_session()
        finally:
            self.file.close()

    def check_range(self, offset: int, length: int) -> None:
        if self.closed:
            raise StateError(f"{self.path}: image is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfBounds(
                f"{self.path}: range {offset}+{length} is outside the disk (size {self.size})"
            )
