"""VhdxImage: the VHDX disk image, and the only VHDX code that reads or writes the file.

# Ref: [MS-VHDX] §2 (structures), §2.3.4 (log replay), §2.5 (BAT).

Open: file identifier → headers (current by sequence number) → log replay → region table 1
(fallback 2) → metadata → BAT, each validated; the BAT stays in memory.

Log replay: a writable open replays into the file and clears LogGuid. A read-only open never
touches the file: the replayed sectors go into an in-memory overlay that every read consults,
so readers see exactly what a writable open would have produced.

Writes: the first write of a session rewrites both headers (new FileWriteGuid, DataWriteGuid
and a fresh LogGuid). Payload goes straight to its block; a new block is placed at the 1 MiB
aligned end of the file. BAT and sector-bitmap changes collect in memory and are committed by
:meth:`flush` (or when many are pending) as one log entry: fdatasync(data), write the entry,
fsync, apply in place, fsync. A crash at any point therefore leaves the old or the new state.
A clean close clears LogGuid again.

Locking: ``self.lock`` guards the BAT, bitmaps, headers and log; ``self._io`` is shared by data
I/O and taken exclusively by block moves (resize, compact), so reads of allocated blocks run in
parallel.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyhv.errors import (
    CorruptImage,
    InvalidFormat,
    NotFoundError,
    OutOfBounds,
    ParentError,
    StateError,
    StorageError,
)
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
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import maintain
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.io import Run, Source, map_range
from pyhv.storage.vhdx.metadata import (
    DiskParams,
    MetadataItem,
    parse_disk_params,
    parse_metadata_table,
)
from pyhv.storage.vhdx.parent import candidate_paths, linkage_identity
from pyhv.storage.vhdx.region import RegionTable, check_log_placement, parse_region_table
from pyhv.storage.vhdx.rwlock import SharedExclusiveLock
from pyhv.units import MiB

log = logging.getLogger(__name__)

SECTOR = s.LOG_SECTOR_SIZE
# Pending metadata sectors that trigger a commit before more are added (well under what one
# entry of the smallest, 1 MiB, log holds).
COMMIT_THRESHOLD_SECTORS = 64


@contextmanager
def os_errors(path: Path, op: str) -> Iterator[None]:
    """Turn OSError into the storage error a user can act on (the one translation point)."""
    try:
        yield
    except FileNotFoundError as err:
        raise NotFoundError(f"{path}: no such file") from err
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise StorageError(f"{path}: {op} failed: no space left on the device") from err
        raise StorageError(f"{path}: {op} failed: {err.strerror or err}") from err


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class VhdxImage(DiskImage):
    format = ImageFormat.VHDX

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__()
        self.path = Path(path)
        self.writable = writable
        self._io = SharedExclusiveLock()
        self._overlay: dict[int, bytes] = {}
        self._overlay_size = 0
        self._session_started = False
        self._data_changed = False
        # Merge sets this on the ancestor it writes into: every byte it writes is one the child
        # already shows, so the child must stay linked (DataWriteGuid kept, see _begin_session).
        self.keep_identity = False
        self._log_seq = 1
        self._dirty_bat: set[int] = set()  # BAT sector numbers
        self._dirty_bitmap: set[tuple[int, int]] = set()  # (chunk, sector in bitmap block)
        self._bitmaps: dict[int, bytearray] = {}
        self._fd = -1
        with os_errors(self.path, "open"):
            self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            self._load()
        except BaseException:
            os.close(self._fd)
            self.closed = True
            raise

    # -- raw file access (the only place touching the fd) -------------------------------------
    def _pread(self, offset: int, length: int) -> bytes:
        with os_errors(self.path, "read"):
            data = os.pread(self._fd, length, offset)
            while len(data) < length:
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
        if len(data) < length:
            data += bytes(length - len(data))
        if self._overlay:
            data = self._apply_overlay(offset, data)
        return data

    def _apply_overlay(self, offset: int, data: bytes) -> bytes:
        buf: bytearray | None = None
        end = offset + len(data)
        for sector_off, content in self._overlay.items():
            if sector_off < end and offset < sector_off + SECTOR:
                if buf is None:
                    buf = bytearray(data)
                lo, hi = max(offset, sector_off), min(end, sector_off + SECTOR)
                buf[lo - offset : hi - offset] = content[lo - sector_off : hi - sector_off]
        return bytes(buf) if buf is not None else data

    def _pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        with os_errors(self.path, "write"):
            view = memoryview(data)
            while view:
                n = os.pwrite(self._fd, view, offset)
                view, offset = view[n:], offset + n

    def _sync(self, data_only: bool = False) -> None:
        with os_errors(self.path, "flush"):
            (os.fdatasync if data_only else os.fsync)(self._fd)

    def _truncate(self, size: int) -> None:
        with os_errors(self.path, "resize file"):
            os.ftruncate(self._fd, size)
        self._file_size = size

    def _real_file_size(self) -> int:
        with os_errors(self.path, "stat"):
            return os.fstat(self._fd).st_size

    # -- open -----------------------------------------------------------------------------------
    def _load(self) -> None:
        self._file_size = self._real_file_size()
        if self._file_size < s.HEADER_SECTION_SIZE:
            head = self._pread(0, 8)
            if head != s.FILE_IDENTIFIER_SIGNATURE:
                raise InvalidFormat(f"{self.path}: not a VHDX file")
            raise CorruptImage(f"{self.path}: VHDX file truncated to {self._file_size} bytes")
        self.creator = hdr.parse_file_identifier(self._pread(0, 520))
        self._read_headers()
        if self.header.log_pending:
            self._replay_log()
        self._load_structures()

    def _read_headers(self) -> None:
        found: list[hdr.Header | None] = []
        errors: list[str] = []
        for off in s.HEADER_OFFSETS:
            try:
                found.append(hdr.parse_header(self._pread(off, s.HEADER_SIZE), off))
            except StorageError as err:
                found.append(None)
                errors.append(str(err))
        if found[0] is None and found[1] is None:
            raise CorruptImage(f"{self.path}: no valid VHDX header ({errors[0]})")
        self._header_slot, self.header = hdr.select_current(found[0], found[1])

    def _load_structures(self) -> None:
        self.regions = self._read_region_table()
        h = self.header
        check_log_placement(self.regions, h.log_offset, h.log_length)
        size = self._file_size
        if h.log_length and h.log_offset + h.log_length > size:
            raise CorruptImage(f"{self.path}: log at {h.log_offset:#x} lies past the end of file")
        for r in self.regions.all():
            if r.end > size and r.guid in s.KNOWN_REGIONS:
                raise CorruptImage(f"{self.path}: region {r.guid} at {r.file_offset:#x} past EOF")
        md = self.regions.metadata
        self._metadata = self._pread(md.file_offset, md.length)
        self._items: list[MetadataItem] = parse_metadata_table(self._metadata, md.length)
        self.params: DiskParams = parse_disk_params(self._metadata, self._items)
        p = self.params
        self.geometry = batlib.BatGeometry(
            p.block_size, p.logical_sector_size, p.virtual_size, p.has_parent
        )
        b = self.regions.bat
        if self.geometry.bat_bytes > b.length:
            raise CorruptImage(
                f"{self.path}: BAT region ({b.length} bytes) is too small for "
                f"{self.geometry.entry_count} entries"
            )
        self.bat = batlib.parse_bat(
            self._pread(b.file_offset, self.geometry.bat_bytes), self.geometry
        )
        reserved = [(0, s.HEADER_SECTION_SIZE, "the header section")]
        if h.log_length:
            reserved.append((h.log_offset, h.log_offset + h.log_length, "the log"))
        reserved += [(r.file_offset, r.end, f"region {r.guid}") for r in self.regions.all()]
        batlib.validate_bat(self.bat, self.geometry, size, reserved, b.file_offset)
        self._reserved = reserved
        ends = [end for _, end, _ in reserved]
        ends += [batlib.entry_offset(e) + self._entry_length(i, e) for i, e in enumerate(self.bat)]
        self._alloc_end = round_up(max([size, *ends]), MiB)

    def _entry_length(self, index: int, entry: int) -> int:
        state = entry & s.BAT_STATE_MASK
        if self.geometry.is_bitmap_index(index):
            return s.SECTOR_BITMAP_BLOCK_SIZE if state == s.BitmapState.PRESENT else 0
        return self.geometry.block_size if state in batlib.PRESENT_STATES else 0

    def _read_region_table(self) -> RegionTable:
        first: StorageError | None = None
        for off in s.REGION_TABLE_OFFSETS:
            try:
                return parse_region_table(self._pread(off, s.REGION_TABLE_SIZE), off)
            except CorruptImage as err:
                first = first or err
        assert first is not None
        raise CorruptImage(f"{self.path}: both region tables are damaged ({first})")

    def _replay_log(self) -> None:
        h = self.header
        if h.log_offset + h.log_length > self._file_size:
            raise CorruptImage(f"{self.path}: log at {h.log_offset:#x} lies past the end of file")
        sequence = loglib.find_active_sequence(self._pread(h.log_offset, h.log_length), h.log_guid)
        writes, flushed, last = loglib.replay_writes(sequence)
        loglib.check_replay_bounds(writes, self._file_size, flushed)
        if not self.writable:
            self._replay_in_memory(writes, last)
            return
        log.info("%s: replaying %d log writes", self.path, len(writes))
        for w in writes:
            self._pwrite(w.file_offset, w.data if w.data is not None else bytes(w.length))
        if last > self._real_file_size():
            self._truncate(round_up(last, MiB))
        self._file_size = self._real_file_size()
        self._sync()
        self._write_headers(hdr.next_header(self.header, log_guid=s.NULL_GUID))

    def _replay_in_memory(self, writes: list[loglib.LogWrite], last: int) -> None:
        for w in writes:
            for off in range(w.file_offset, w.file_offset + w.length, SECTOR):
                chunk = w.data if w.data is not None else bytes(SECTOR)
                self._overlay[off] = chunk
        self._file_size = max(self._file_size, last)

    # -- headers and the log ------------------------------------------------------------------
    def _write_headers(self, new: hdr.Header) -> None:
        packed = hdr.pack_header(new)
        for slot in hdr.update_slots(self._header_slot):
            self._pwrite(s.HEADER_OFFSETS[slot], packed)
            self._sync()
        self.header = new

    def _require_writable(self) -> None:
        if not self.writable:
            raise StateError(f"{self.path}: image is open read-only")
        if self.closed:
            raise StateError(f"{self.path}: image is closed")

    def _begin_session(self, data: bool = True) -> None:
        """§2.2.2: a new FileWriteGuid before the first change of the session, a new
        DataWriteGuid before the first change of what the disk shows (``data``), plus a LogGuid
        so our log entries are recognised (entries of other sessions carry other GUIDs).
        Locator-only changes keep DataWriteGuid, so children of this disk stay linked."""
        with self.lock:
            if self._session_started and (self._data_changed or not data):
                return
            self._require_writable()
            log_guid = self.header.log_guid if self._session_started else uuid.uuid4()
            self._write_headers(
                hdr.next_header(
                    self.header,
                    new_file_write=not self._session_started,
                    new_data_write=data and not self.keep_identity,
                    log_guid=log_guid,
                )
            )
            self._session_started = True
            self._data_changed = data

    def _log_transaction(
        self, sectors: dict[int, bytes], zeros: list[tuple[int, int]], data: bool = True
    ) -> None:
        """Write ``sectors``/``zeros`` crash-safely: log entry, fsync, in place, fsync."""
        if not sectors and not zeros:
            return
        self._begin_session(data)
        h = self.header
        entry = loglib.build_log_entry(
            sequence_number=self._log_seq,
            log_guid=h.log_guid,
            sectors=sectors,
            zeros=zeros,
            flushed_file_offset=self._real_file_size(),
            last_file_offset=self._alloc_end,
            log_length=h.log_length,
        )
        self._log_seq += 1
        self._sync(data_only=True)  # data the new metadata points at is durable first
        self._pwrite(h.log_offset, entry)
        self._sync()
        for off, zlen in zeros:
            self._pwrite(off, bytes(zlen))
        for off, content in sectors.items():
            self._pwrite(off, content)
        self._sync()

    def _retire_log_entry(self) -> None:
        """Blank pyhv's (already applied) entry so no replay ever repeats it."""
        self._pwrite(self.header.log_offset, bytes(SECTOR))
        self._sync()

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
            self._log_transaction(sectors, [])
            self._dirty_bat.clear()
            self._dirty_bitmap.clear()

    def _set_entry(self, index: int, value: int) -> None:
        self.bat[index] = value
        self._dirty_bat.add(index * s.BAT_ENTRY_SIZE // SECTOR)

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

    # -- reading ------------------------------------------------------------------------------
    def _bitmap(self, chunk: int) -> bytearray:
        """The chunk's sector bitmap, cached; all zeros while the block is not present."""
        cached = self._bitmaps.get(chunk)
        if cached is None:
            entry = self.bat[self.geometry.bitmap_index(chunk)]
            if entry & s.BAT_STATE_MASK == s.BitmapState.PRESENT:
                raw = self._pread(batlib.entry_offset(entry), s.SECTOR_BITMAP_BLOCK_SIZE)
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

    def _read_run(self, run: Run) -> bytes:
        if run.source is Source.FILE:
            return self._pread(run.file_offset, run.length)
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
        self._begin_session()
        view = memoryview(data)
        with self._io.shared():
            pos = 0
            while pos < len(view):
                block, in_block = divmod(offset + pos, self.block_size)
                n = min(self.block_size - in_block, len(view) - pos)
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
            self._pwrite(batlib.entry_offset(entry) + in_block, data)
            return
        with self.lock:
            entry = self.bat[index]
            state = entry & s.BAT_STATE_MASK
            if state == s.PayloadState.FULLY_PRESENT:
                self._pwrite(batlib.entry_offset(entry) + in_block, data)
                return
            if state == s.PayloadState.PARTIALLY_PRESENT:
                self._pwrite(batlib.entry_offset(entry) + in_block, data)
                self._mark_present(block, in_block, len(data))
                return
            whole = in_block == 0 and len(data) == g.block_data_length(block)
            partial = state == s.PayloadState.NOT_PRESENT and self.params.has_parent and not whole
            if partial:
                self._ensure_bitmap_block(block)
            offset = self._allocate(g.block_size)
            self._pwrite(offset + in_block, data)
            if partial:
                self._set_entry(index, batlib.pack_entry(s.PayloadState.PARTIALLY_PRESENT, offset))
                self._mark_present(block, in_block, len(data))
            else:
                self._set_entry(index, batlib.pack_entry(s.PayloadState.FULLY_PRESENT, offset))
            self._maybe_commit()

    def _allocate(self, length: int) -> int:
        """Space for a new block at the aligned end of the file (zero-filled, sparse)."""
        offset = self._alloc_end
        self._alloc_end = offset + round_up(length, MiB)
        self._truncate(self._alloc_end)
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
        batlib.set_bitmap_bits(self._bitmap(chunk), first, count)
        first_sector = first // 8 // SECTOR
        last_sector = (first + count - 1) // 8 // SECTOR
        for n in range(first_sector, last_sector + 1):
            self._dirty_bitmap.add((chunk, n))

    def flush(self) -> None:
        if not self.writable or self.closed:
            return
        with self._io.shared():
            self._commit()
            self._sync()

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
                self._begin_session()
                with self._io.shared(), self.lock:
                    self._set_entry(g.payload_index(block), self._zero_entry())
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
        g = self.geometry
        return [
            b
            for b in range(g.payload_blocks)
            if self.bat[g.payload_index(b)] & s.BAT_STATE_MASK in batlib.PRESENT_STATES
        ]

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
                file_size=self._real_file_size(),
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
            if self.writable and self._session_started:
                self._commit()
                self._sync()
                self._write_headers(hdr.next_header(self.header, log_guid=s.NULL_GUID))
        finally:
            os.close(self._fd)
            self._fd = -1

    def check_range(self, offset: int, length: int) -> None:
        if self.closed:
            raise StateError(f"{self.path}: image is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfBounds(
                f"{self.path}: range {offset}+{length} is outside the disk (size {self.size})"
            )
