"""VhdImage: fixed, dynamic and differencing VHD; the only VHD module doing I/O.

Writes that allocate a block go in this order, so a killed process always leaves a readable
image: the footer at the new end of file, then the block's bitmap and data (past the old end,
so untouched parts are holes reading as zeros), then the BAT entry. Metadata changes happen
under ``self.lock``; reads and writes into allocated blocks run in parallel.

Sector bitmaps decide reads only in differencing disks. In dynamic disks allocated blocks are
read whole, as qemu does, and pyhv marks every sector of a block it allocates as present.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from pyhv.errors import CorruptImage, InvalidFormat, UnsupportedFeature
from pyhv.storage.fileio import (
    CachedReads,
    data_runs,
    os_errors,
    pread_exact,
    pread_into,
    punch_hole,
    pwrite_all,
)
from pyhv.storage.image import DiskImage, DiskType, Extent, ExtentState, ImageFormat, ImageInfo
from pyhv.storage.image import merge_extents as merge
from pyhv.storage.vhd import bat as batlib
from pyhv.storage.vhd import maintain
from pyhv.storage.vhd.footer import (
    Footer,
    choose_footer,
    pack_footer,
)
from pyhv.storage.vhd.header import (
    DynamicHeader,
    decode_locator,
    parent_candidates,
    parse_header,
)
from pyhv.storage.vhd.structs import (
    BAT_UNUSED,
    BITMAP_GRAIN,
    DATA_ALIGNMENT,
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_DYNAMIC,
    DISK_TYPE_FIXED,
    FOOTER_SIZE,
    HEADER_SIZE,
    SECTOR_SIZE,
)

# Runs of whole BAT entries (4 bytes each; 0xFFFFFFFF reads the same in any byte order).
_UNUSED_RUN = re.compile(b"(?:\xff\xff\xff\xff)+")
_USED_RUN = re.compile(b"(?:(?!\xff\xff\xff\xff).{4})+", re.DOTALL)

# Sector bitmaps kept in memory (differencing disks): ~0.5 KiB each, so at most ~32 MiB.
_BITMAP_CACHE_BLOCKS = 65536

_DISK_TYPES = {
    DISK_TYPE_FIXED: DiskType.FIXED,
    DISK_TYPE_DYNAMIC: DiskType.DYNAMIC,
    DISK_TYPE_DIFFERENCING: DiskType.DIFFERENCING,
}


class VhdImage(DiskImage):
    format = ImageFormat.VHD

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__()
        self.path = path
        self.writable = writable
        with os_errors(path, "open"):
            self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        self._cached = CachedReads(self.fd)
        try:
            with os_errors(path, "read"):
                self._load()
        except BaseException:
            os.close(self.fd)
            raise

    # -- opening ------------------------------------------------------------------------------
    def _load(self) -> None:
        self.file_size = os.fstat(self.fd).st_size
        self.footer_problems: list[str] = []
        self.footer, self.footer_offset = self._read_footer()
        self.disk_type = _DISK_TYPES[self.footer.disk_type]
        self._size = self.footer.virtual_size
        self.header: DynamicHeader | None = None
        self.bat = array("I")
        self._bitmaps: dict[int, int] = {}
        # changed in memory, written by flush() once the data they describe is durable
        self._pending_bat: set[int] = set()
        self._pending_bitmaps: set[int] = set()
        if self.disk_type == DiskType.FIXED:
            if self.footer.current_size > self.footer_offset:
                raise CorruptImage(
                    f"{self.path}: fixed VHD is truncated: its footer says "
                    f"{self.footer.current_size} bytes of data, the file holds {self.footer_offset}"
                )
            return
        self._load_dynamic()

    def _read_footer(self) -> tuple[Footer, int]:
        end = max(0, self.file_size - FOOTER_SIZE)
        tail = pread_exact(self.fd, FOOTER_SIZE, end)
        head = pread_exact(self.fd, FOOTER_SIZE, 0)
        try:
            choice = choose_footer(head, tail, self.file_size)
        except (InvalidFormat, CorruptImage, UnsupportedFeature) as e:
            raise type(e)(f"{self.path}: {e}") from e
        self.footer_problems.extend(choice.problems)
        # the footer's own bytes: a legacy footer is the last 511 bytes, not 512
        self._stale_copy = tail[choice.offset - end :] if choice.stale_copy else None
        return choice.footer, choice.offset

    def _finish_interrupted_resize(self) -> None:
        """Refresh a copy at offset 0 that lags an interrupted resize (the end-of-file footer
        is authoritative, so readers never needed it). Done at the first flush, not at open:
        an open whose operation is then refused (a shrink, a damaged BAT) changes nothing."""
        if self._stale_copy is not None:
            pwrite_all(self.fd, self._stale_copy, 0)
            self._stale_copy = None

    def _load_dynamic(self) -> None:
        f = self.footer
        if f.data_offset + HEADER_SIZE > self.file_size:
            raise CorruptImage(f"{self.path}: dynamic header offset {f.data_offset:#x} is past EOF")
        try:
            self.header = h = parse_header(pread_exact(self.fd, HEADER_SIZE, f.data_offset))
        except (CorruptImage, UnsupportedFeature) as e:
            raise type(e)(f"{self.path}: {e}") from e
        self.spb = h.block_size // SECTOR_SIZE
        self.bitmap_size = batlib.bitmap_size(h.block_size)
        self.record_size = self.bitmap_size + h.block_size
        needed = batlib.entries_for(self._size, h.block_size)
        if h.max_table_entries < needed:
            raise CorruptImage(
                f"{self.path}: BAT has {h.max_table_entries} entries, the size needs {needed}"
            )
        table_bytes = batlib.bat_bytes(h.max_table_entries)
        if h.table_offset + table_bytes > self.file_size:
            raise CorruptImage(f"{self.path}: BAT at {h.table_offset:#x} runs past the end of file")
        self.bat = batlib.parse_bat(
            pread_exact(self.fd, h.max_table_entries * 4, h.table_offset), h.max_table_entries
        )
        problems = batlib.bat_problems(
            self.bat, self.record_size, self.reserved_ranges(), self.footer_offset
        )
        if problems:
            raise CorruptImage(f"{self.path}: {problems[0]}")
        self._next_free = max([self.file_size, *(end for _, end, _ in self.reserved_ranges())])

    def reserved_ranges(self) -> list[tuple[int, int, str]]:
        """Metadata areas blocks must not overlap: (start, end, name)."""
        assert self.header is not None
        h = self.header
        out = [
            (0, FOOTER_SIZE, "footer copy"),
            (self.footer.data_offset, self.footer.data_offset + HEADER_SIZE, "dynamic header"),
            (h.table_offset, h.table_offset + batlib.bat_bytes(h.max_table_entries), "BAT"),
        ]
        for loc in h.locators:
            if loc.code != b"\0\0\0\0" and loc.data_length:
                out.append((loc.data_offset, loc.data_offset + loc.space_bytes, "parent locator"))
        return out

    # -- geometry / identity ------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._size

    @property
    def block_size(self) -> int:
        return self.header.block_size if self.header else 0

    @property
    def identity(self) -> bytes:
        return self.footer.unique_id

    @property
    def parent_identity(self) -> bytes:
        return self.header.parent_unique_id if self.header else b""

    def parent_candidates(self) -> list[Path]:
        assert self.header is not None
        found: list[tuple[bytes, str]] = []
        for loc in self.header.locators:
            if not loc.data_length or loc.data_offset + loc.data_length > self.file_size:
                continue
            data = pread_exact(self.fd, min(loc.data_length, 1 << 16), loc.data_offset)
            text = decode_locator(loc.code, data)
            if text:
                found.append((loc.code, text))
        return parent_candidates(self.path.parent, self.header.parent_name, found)

    def attach_parent(self, parent: DiskImage) -> None:
        self.parent = parent

    # -- reading ------------------------------------------------------------------------------
    def _pieces(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(block, offset in block, bytes) pieces of a byte range."""
        bs = self.block_size
        out = []
        pos, end = offset, offset + length
        while pos < end:
            blk, boff = divmod(pos, bs)
            n = min(bs - boff, end - pos)
            out.append((blk, boff, n))
            pos += n
        return out

    def _data_offset(self, entry: int) -> int:
        return entry * SECTOR_SIZE + self.bitmap_size

    def _bitmap(self, blk: int, entry: int) -> int:
        bm = self._bitmaps.get(blk)
        if bm is None:
            with self.lock:
                bm = self._bitmaps.get(blk)
                if bm is None:
                    if len(self._bitmaps) >= _BITMAP_CACHE_BLOCKS:  # keep only unflushed ones
                        pending = self._pending_bitmaps
                        self._bitmaps = {b: v for b, v in self._bitmaps.items() if b in pending}
                    raw = pread_exact(self.fd, self.bitmap_size, entry * SECTOR_SIZE)
                    bm = self._bitmaps[blk] = batlib.bitmap_to_int(raw, self.spb)
        return bm

    def _read_parent(self, offset: int, length: int) -> bytes:
        """Through the parent; past a (smaller) parent's end the disk reads zeros."""
        if self.parent is None:
            return bytes(length)
        inside = max(0, min(length, self.parent.size - offset))
        data = self.parent.read(offset, inside) if inside else b""
        return data if inside == length else data + bytes(length - inside)

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        with os_errors(self.path, "read"):
            if self.header is None:
                return pread_exact(self.fd, length, offset)
            # One zero-filled buffer read into in place: unallocated pieces cost nothing.
            buf = bytearray(length)
            view = memoryview(buf)
            pos = 0
            for blk, boff, n in self._pieces(offset, length):
                self._read_piece(view[pos : pos + n], blk, boff, offset + pos)
                pos += n
            # Handed out as is: copying into a bytes object costs 10x the read itself. It has
            # the whole read-only bytes API; only hashing and identity checks differ.
            return cast(bytes, buf)

    def read_cached(self, offset: int, length: int) -> bytes | None:
        """Without waiting: fixed disks and allocated blocks of dynamic ones from the page
        cache, unallocated blocks as zeros or from the parent's ``read_cached``; None when a
        piece would block or needs a sector bitmap (allocated blocks of differencing disks).
        Like :meth:`read`, it takes no lock."""
        if not self.cached_range_ok(offset, length):
            return None
        if self.header is None:
            return self._cached.read(offset, length)
        return self.join_cached(self._cached_pieces(offset, length))

    def _cached_pieces(self, offset: int, length: int) -> Iterator[bytes | None]:
        for blk, boff, n in self._pieces(offset, length):
            entry = self.bat[blk]
            if entry == BAT_UNUSED:
                yield self._read_parent_cached(blk * self.block_size + boff, n)
            elif self.disk_type == DiskType.DIFFERENCING:
                yield None  # the sector bitmap decides: read()'s job
            else:
                yield self._cached.read(self._data_offset(entry) + boff, n)

    def _read_parent_cached(self, offset: int, length: int) -> bytes | None:
        if self.parent is None:
            return bytes(length)
        if offset + length > self.parent.size:  # a smaller parent: read() pads with zeros
            return None
        return self.parent.read_cached(offset, length)

    def _read_piece(self, out: memoryview, blk: int, boff: int, offset: int) -> None:
        n = len(out)
        entry = self.bat[blk]
        if entry == BAT_UNUSED:
            if self.parent is not None:
                out[:] = self._read_parent(offset, n)
            return
        if self.disk_type != DiskType.DIFFERENCING:
            pread_into(self.fd, out, self._data_offset(entry) + boff)
            return
        first = boff // SECTOR_SIZE
        last = (boff + n - 1) // SECTOR_SIZE
        block_start = offset - boff
        for s, count, present in batlib.bitmap_runs(
            self._bitmap(blk, entry), first, last - first + 1, self.spb
        ):
            lo = max(s * SECTOR_SIZE, boff)
            hi = min((s + count) * SECTOR_SIZE, boff + n)
            if present:
                pread_into(self.fd, out[lo - boff : hi - boff], self._data_offset(entry) + lo)
            elif self.parent is not None:
                out[lo - boff : hi - boff] = self._read_parent(block_start + lo, hi - lo)

    # -- writing ------------------------------------------------------------------------------
    def write(self, offset: int, data: bytes) -> None:
        self._check_writable()
        self.check_range(offset, len(data))
        if not data:
            return
        with os_errors(self.path, "write"):
            # Differencing layers set bitmap bits for whole 4 KiB groups (one bitmap byte),
            # filling from the parent: libvhdi misreads partially set bitmap bytes.
            unit = BITMAP_GRAIN if self.disk_type == DiskType.DIFFERENCING else SECTOR_SIZE
            start = offset - offset % unit
            end = min(batlib.align_up(offset + len(data), unit), self.size)
            if start == offset and end == offset + len(data):
                self._write_aligned(offset, memoryview(data))
                return
            with self.lock:  # read-modify-write of the edges must not interleave
                head = self.read(start, offset - start)
                tail = self.read(offset + len(data), end - offset - len(data))
                self._write_aligned(start, memoryview(b"".join((head, data, tail))))

    def _write_aligned(self, offset: int, data: memoryview) -> None:
        if self.header is None:
            pwrite_all(self.fd, data, offset)
            return
        pos = 0
        for blk, boff, n in self._pieces(offset, len(data)):
            self._write_piece(blk, boff, data[pos : pos + n])
            pos += n

    def _write_piece(self, blk: int, boff: int, data: memoryview) -> None:
        entry = self.bat[blk]
        if entry == BAT_UNUSED:
            with self.lock:
                if self.bat[blk] == BAT_UNUSED:
                    self._allocate(blk, boff, data)
                    return
                entry = self.bat[blk]
        pwrite_all(self.fd, data, self._data_offset(entry) + boff)
        if self.disk_type == DiskType.DIFFERENCING:
            mask = batlib.run_mask(boff // SECTOR_SIZE, len(data) // SECTOR_SIZE, self.spb)
            if self._bitmap(blk, entry) & mask != mask:
                with self.lock:
                    self._bitmaps[blk] = self._bitmap(blk, entry) | mask
                    self._pending_bitmaps.add(blk)

    def _allocate(self, blk: int, boff: int, data: memoryview) -> None:
        """New block past the end of file: footer first, then bitmap + data; the BAT entry
        reaches the disk at the next flush, after them."""
        bitmap_off = (
            batlib.align_up(self._next_free + self.bitmap_size, DATA_ALIGNMENT) - self.bitmap_size
        )
        if bitmap_off // SECTOR_SIZE >= BAT_UNUSED:
            raise UnsupportedFeature(f"{self.path}: file would exceed the VHD limit of 2 TiB")
        block_end = bitmap_off + self.record_size
        pwrite_all(self.fd, pack_footer(self.footer), block_end)
        if self.disk_type == DiskType.DIFFERENCING:
            bm = batlib.run_mask(boff // SECTOR_SIZE, len(data) // SECTOR_SIZE, self.spb)
        else:
            bm = (1 << self.spb) - 1  # dynamic: every sector of an allocated block is data
        pwrite_all(self.fd, batlib.int_to_bitmap(bm, self.spb, self.bitmap_size), bitmap_off)
        pwrite_all(self.fd, data, bitmap_off + self.bitmap_size + boff)
        self.bat[blk] = bitmap_off // SECTOR_SIZE
        self._pending_bat.add(blk)
        self._bitmaps[blk] = bm
        self.footer_offset = block_end
        self.file_size = self._next_free = block_end + FOOTER_SIZE

    def _write_bat_entries(self, first: int, entries: list[int]) -> None:
        assert self.header is not None
        pwrite_all(self.fd, batlib.pack_entries(entries), self.header.table_offset + 4 * first)
        self.bat[first : first + len(entries)] = array("I", entries)

    def flush(self) -> None:
        """Data first, then the bitmaps and BAT entries that point at it: after a crash or
        power loss the image holds each write made before the flush."""
        if not self.writable:
            return
        with self.lock, os_errors(self.path, "flush"):
            self._finish_interrupted_resize()
            os.fsync(self.fd)
            if not (self._pending_bat or self._pending_bitmaps):
                return
            for blk in sorted(self._pending_bitmaps):
                raw = batlib.int_to_bitmap(self._bitmaps[blk], self.spb, self.bitmap_size)
                pwrite_all(self.fd, raw, self.bat[blk] * SECTOR_SIZE)
            assert self.header is not None
            per_sector = SECTOR_SIZE // 4
            for sector in sorted({blk // per_sector for blk in self._pending_bat}):
                first = sector * per_sector
                entries = self.bat[first : first + per_sector]
                pwrite_all(
                    self.fd,
                    batlib.pack_entries(entries),
                    self.header.table_offset + first * 4,
                )
            os.fsync(self.fd)
            self._pending_bat.clear()
            self._pending_bitmaps.clear()

    # -- zeroing ------------------------------------------------------------------------------
    def discard(self, offset: int, length: int) -> None:
        """Whole blocks of a dynamic disk are freed; elsewhere aligned data is punched out
        (it then reads as zeros; a differencing layer keeps its bitmap so the parent stays
        hidden)."""
        self._check_writable()
        self.check_range(offset, length)
        with os_errors(self.path, "discard"), self.lock:
            if self.header is None:
                self._punch_aligned(offset, length)
                return
            for blk, boff, n in self._pieces(offset, length):
                entry = self.bat[blk]
                if entry == BAT_UNUSED:
                    continue
                if n == self.block_size and self.disk_type == DiskType.DYNAMIC:
                    self._write_bat_entries(blk, [BAT_UNUSED])
                    self._pending_bat.discard(blk)
                    self._bitmaps.pop(blk, None)
                    self._punch_aligned(entry * SECTOR_SIZE, self.record_size)
                else:
                    self._punch_aligned(self._data_offset(entry) + boff, n)

    def _punch_aligned(self, start: int, length: int) -> None:
        lo = batlib.align_up(start, DATA_ALIGNMENT)
        hi = (start + length) // DATA_ALIGNMENT * DATA_ALIGNMENT
        if hi > lo:
            punch_hole(self.fd, lo, hi - lo)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Dynamic: unallocated ranges already read as zeros and whole blocks are freed.
        Differencing: ranges whose chain already reads zeros are skipped."""
        self._check_writable()
        self.check_range(offset, length)
        if self.header is None:
            super().write_zeroes(offset, length)
            return
        pos = offset
        for blk, _boff, n in self._pieces(offset, length):
            entry = self.bat[blk]
            if self.disk_type == DiskType.DYNAMIC:
                if n == self.block_size and entry != BAT_UNUSED:
                    self.discard(pos, n)
                elif entry != BAT_UNUSED:
                    self.write(pos, bytes(n))
            elif not self._reads_zero(pos, n):
                self.write(pos, bytes(n))
            pos += n

    def _reads_zero(self, offset: int, length: int) -> bool:
        return all(e.state == ExtentState.ZERO for e in self.extents(offset, length))

    # -- allocation map -----------------------------------------------------------------------
    def extents(
        self, offset: int = 0, length: int | None = None, *, chain: bool = True
    ) -> list[Extent]:
        if length is None:
            length = self.size - offset
        self.check_range(offset, length)
        with os_errors(self.path, "read"):
            if self.header is None:
                return self._fixed_extents(offset, length)
            return merge(self._block_extents(offset, offset + length, chain))

    def _block_extents(self, pos: int, end: int, chain: bool) -> list[Extent]:
        """Runs of unallocated blocks become one extent each (one parent call per run), and
        so do runs of allocated blocks of a dynamic disk: no Python loop per block there."""
        bs = self.block_size
        table = self.bat.tobytes()
        out: list[Extent] = []
        while pos < end:
            blk = pos // bs
            last = (end - 1) // bs + 1
            unused = self.bat[blk] == BAT_UNUSED
            if unused or self.disk_type != DiskType.DIFFERENCING:
                pattern = _UNUSED_RUN if unused else _USED_RUN
                match = pattern.match(table, 4 * blk, 4 * last)
                stop = min(end, (match.end() // 4 if match else blk + 1) * bs)
                if unused:
                    out.extend(self._missing(pos, stop - pos, chain))
                else:
                    out.append(Extent(pos, stop - pos, ExtentState.DATA))
            else:
                stop = min(end, (blk + 1) * bs)
                out.extend(self._piece_extents(blk, pos - blk * bs, stop - pos, pos, chain))
            pos = stop
        return out

    def _fixed_extents(self, offset: int, length: int) -> list[Extent]:
        out: list[Extent] = []
        pos = offset
        for start, n in data_runs(self.fd, offset, offset + length):
            out += [Extent(pos, start - pos, ExtentState.ZERO), Extent(start, n, ExtentState.DATA)]
            pos = start + n
        out.append(Extent(pos, offset + length - pos, ExtentState.ZERO))
        return merge(out)

    def _missing(self, offset: int, n: int, chain: bool) -> list[Extent]:
        if self.disk_type != DiskType.DIFFERENCING:
            return [Extent(offset, n, ExtentState.ZERO)]
        if not chain:
            return [Extent(offset, n, ExtentState.BACKING)]
        if self.parent is None:
            return [Extent(offset, n, ExtentState.ZERO)]
        inside = max(0, min(n, self.parent.size - offset))
        out = self.parent.extents(offset, inside, chain=True) if inside else []
        return [*out, Extent(offset + inside, n - inside, ExtentState.ZERO)]

    def _piece_extents(self, blk: int, boff: int, n: int, pos: int, chain: bool) -> list[Extent]:
        entry = self.bat[blk]
        if entry == BAT_UNUSED:
            return self._missing(pos, n, chain)
        if self.disk_type != DiskType.DIFFERENCING:
            return [Extent(pos, n, ExtentState.DATA)]
        first = boff // SECTOR_SIZE
        last = (boff + n - 1) // SECTOR_SIZE
        out: list[Extent] = []
        block_start = pos - boff
        for s, count, present in batlib.bitmap_runs(
            self._bitmap(blk, entry), first, last - first + 1, self.spb
        ):
            lo = max(s * SECTOR_SIZE, boff)
            hi = min((s + count) * SECTOR_SIZE, boff + n)
            if present:
                out.append(Extent(block_start + lo, hi - lo, ExtentState.DATA))
            else:
                out.extend(self._missing(block_start + lo, hi - lo, chain))
        return out

    # -- information --------------------------------------------------------------------------
    def allocated_blocks(self) -> int:
        return sum(1 for e in self.bat if e != BAT_UNUSED)

    def info(self) -> ImageInfo:
        f = self.footer
        allocated = self.size if self.header is None else self.allocated_blocks() * self.block_size
        parent = self.parent.path if self.parent is not None else None
        if parent is None and self.disk_type == DiskType.DIFFERENCING:
            candidates = self.parent_candidates()
            parent = candidates[0] if candidates else None
        g = f.geometry
        return ImageInfo(
            path=str(self.path),
            format=self.format,
            disk_type=self.disk_type,
            size=self.size,
            file_size=self.file_size,
            minimum_size=self.size,
            block_size=self.block_size,
            logical_sector_size=SECTOR_SIZE,
            physical_sector_size=SECTOR_SIZE,
            identifier=f.uuid,
            parent_path=str(parent) if parent is not None else None,
            allocated_bytes=min(allocated, self.size),
            extra={
                "creator": f.creator_app.decode("latin-1").rstrip("\0 "),
                "creator_version": f"{f.creator_version >> 16}.{f.creator_version & 0xFFFF}",
                "geometry": f"{g.cylinders}/{g.heads}/{g.sectors_per_track}",
                "current_size": f.current_size,
                "original_size": f.original_size,
                "problems": list(self.footer_problems),
            },
        )

    # -- maintenance (Resizable, Compactable, Differencing) -----------------------------------
    def resize(self, new_size: int) -> None:
        """Grow only: VHD cannot shrink (UnsupportedFeature)."""
        self._check_writable()
        maintain.resize(self, new_size)

    def compact(self, progress: Callable[[int, int], None] | None = None) -> int:
        self._check_writable()
        return maintain.compact(self, progress)

    def set_parent_locator(self, parent: DiskImage, parent_path: Path) -> None:
        self._check_writable()
        maintain.set_parent_locator(self, parent, parent_path)

    # -- lifecycle ----------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if not self.writable:
            raise UnsupportedFeature(f"{self.path}: image is open read-only")

    def _close(self) -> None:
        try:
            if self._pending_bat or self._pending_bitmaps:
                self.flush()
        finally:
            os.close(self.fd)
