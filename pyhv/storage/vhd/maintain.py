"""Resize, compact and set-parent for an open VhdImage (Resize-VHD, Optimize-VHD, Set-VHD).

Each step that changes what a reader sees is fsynced before the next, so a crash leaves the
old or the new state: new space is written before anything points to it, and the pointer
(header, BAT entry, footer) is updated last.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pyhv.errors import ParentError, UnsupportedFeature
from pyhv.storage.fileio import os_errors, pread_exact, pwrite_all
from pyhv.storage.image import DiskImage, DiskType
from pyhv.storage.vhd import bat as batlib
from pyhv.storage.vhd.create import validate_size
from pyhv.storage.vhd.footer import pack_footer
from pyhv.storage.vhd.geometry import chs_for_size
from pyhv.storage.vhd.header import Locator, locator_payloads, locator_space, pack_header
from pyhv.storage.vhd.layout import first_fit, plan_compaction, room_after
from pyhv.storage.vhd.structs import (
    BAT_UNUSED,
    CREATOR_APP,
    CREATOR_HOST_OS,
    CREATOR_VERSION,
    DATA_ALIGNMENT,
    FOOTER_SIZE,
    PLATFORM_W2KU,
    PLATFORM_W2RU,
    SECTOR_SIZE,
)

if TYPE_CHECKING:
    from pyhv.storage.vhd.image import VhdImage


def resize(img: VhdImage, new_size: int) -> None:
    """Grow the disk; the BAT grows in place when there is room, else moves to the end.

    The creator becomes pyhv's (``win ``) so every reader takes the new current_size.
    """
    new = validate_size(new_size)
    if new < img.size:  # refused before anything is written
        raise UnsupportedFeature(
            f"{img.path}: VHD cannot shrink ({img.size} → {new}); convert to VHDX first"
        )
    img.flush()  # pending BAT entries first: the steps below rewrite the table
    with img.lock, os_errors(img.path, "resize"):
        if new == img.size:
            return
        if img.header is None:
            _grow_fixed(img, new)
        else:
            _grow_bat(img, batlib.entries_for(new, img.block_size))
        footer = img.footer.replace(
            current_size=new,
            geometry=chs_for_size(new),
            creator_app=CREATOR_APP,
            creator_version=CREATOR_VERSION,
            creator_os=CREATOR_HOST_OS,
        )
        packed = pack_footer(footer)
        pwrite_all(img.fd, packed, img.footer_offset)
        os.fsync(img.fd)
        if img.header is not None:
            pwrite_all(img.fd, packed, 0)
            os.fsync(img.fd)
        img.footer = footer
        img._size = footer.virtual_size


def _grow_fixed(img: VhdImage, new: int) -> None:
    """New footer at the new end first; then the old footer becomes zeroed disk space."""
    old_data_end = img.footer.current_size
    old_file_size = img.file_size
    if new <= old_data_end:  # a CHS-sized disk growing into the data it already has
        return
    pwrite_all(img.fd, pack_footer(img.footer), new)
    os.fsync(img.fd)
    pwrite_all(img.fd, bytes(old_file_size - old_data_end), old_data_end)
    os.fsync(img.fd)
    img.footer_offset = new
    img.file_size = new + FOOTER_SIZE


def _grow_bat(img: VhdImage, entries: int) -> None:
    assert img.header is not None
    h = img.header
    if entries <= h.max_table_entries:
        return
    old = h.max_table_entries
    others = [(s, e) for s, e, name in img.reserved_ranges() if name != "BAT"]
    others += [
        (e * SECTOR_SIZE, e * SECTOR_SIZE + img.record_size) for e in img.bat if e != BAT_UNUSED
    ]
    room = room_after(
        h.table_offset, [(s, e) for s, e in others if s >= h.table_offset], img.footer_offset
    )
    if batlib.bat_bytes(entries) <= room:
        pad = batlib.bat_bytes(entries) - 4 * old
        pwrite_all(img.fd, b"\xff" * pad, h.table_offset + 4 * old)
        table_offset = h.table_offset
    else:  # relocate the BAT past the end of file, then point the header at it
        table_offset = batlib.align_up(img._next_free, DATA_ALIGNMENT)
        table = batlib.pack_entries(img.bat) + b"\xff" * (batlib.bat_bytes(entries) - 4 * old)
        pwrite_all(img.fd, table, table_offset)
        end = table_offset + len(table)
        pwrite_all(img.fd, pack_footer(img.footer), end)
        img.footer_offset, img.file_size = end, end + FOOTER_SIZE
        img._next_free = img.file_size
    os.fsync(img.fd)
    img.header = h.replace(table_offset=table_offset, max_table_entries=entries)
    pwrite_all(img.fd, pack_header(img.header), img.footer.data_offset)
    os.fsync(img.fd)
    img.bat.extend([BAT_UNUSED] * (entries - old))


def compact(img: VhdImage, progress: Callable[[int, int], None] | None) -> int:
    """Free blocks reading zeros (differencing: where the parent reads zeros too), then move
    the last blocks into the holes and cut the file; returns the bytes given back."""
    if img.header is None:
        return 0
    img.flush()
    with img.lock, os_errors(img.path, "compact"):
        before = img.file_size
        _free_zero_blocks(img, progress)
        _move_blocks_down(img)
        return max(0, before - img.file_size)


def _free_zero_blocks(img: VhdImage, progress: Callable[[int, int], None] | None) -> None:
    bs = img.block_size
    total = len(img.bat)
    freed = []
    for blk, entry in enumerate(img.bat):
        if progress and blk % 64 == 0:
            progress(blk, total)
        start = blk * bs
        if entry == BAT_UNUSED or start >= img.size:
            continue
        n = min(bs, img.size - start)
        zero = bytes(n)
        if img.read(start, n) != zero:
            continue
        if img.disk_type == DiskType.DIFFERENCING and img._read_parent(start, n) != zero:
            continue
        freed.append(blk)
    if progress:
        progress(total, total)
    if not freed:
        return
    records = [img.bat[blk] * SECTOR_SIZE for blk in freed]
    for blk in freed:
        img.bat[blk] = BAT_UNUSED
        img._bitmaps.pop(blk, None)
    assert img.header is not None
    pwrite_all(img.fd, batlib.pack_entries(img.bat), img.header.table_offset)
    os.fsync(img.fd)
    for start in records:  # unreferenced now: their space goes back even if they never move
        img._punch_aligned(start, img.record_size)


def _move_bat_down(img: VhdImage) -> None:
    """A BAT that resize moved to the end goes back into a hole, so the file can shrink:
    copy, fsync, then point the header at the copy."""
    assert img.header is not None
    h = img.header
    length = batlib.bat_bytes(h.max_table_entries)
    occupied = [(s, e) for s, e, name in img.reserved_ranges() if name != "BAT"]
    occupied += [
        (e * SECTOR_SIZE, e * SECTOR_SIZE + img.record_size) for e in img.bat if e != BAT_UNUSED
    ]
    target = first_fit(sorted(occupied), length, h.table_offset, SECTOR_SIZE)
    if target is None:
        return
    table = batlib.pack_entries(img.bat)
    pwrite_all(img.fd, table + b"\xff" * (length - len(table)), target)
    os.fsync(img.fd)
    img.header = h.replace(table_offset=target)
    pwrite_all(img.fd, pack_header(img.header), img.footer.data_offset)
    os.fsync(img.fd)


def _move_blocks_down(img: VhdImage) -> None:
    _move_bat_down(img)
    blocks = {b: e * SECTOR_SIZE for b, e in enumerate(img.bat) if e != BAT_UNUSED}
    reserved = [(s, e) for s, e, _ in img.reserved_ranges()]
    moves, end = plan_compaction(blocks, reserved, img.record_size, img.bitmap_size, DATA_ALIGNMENT)
    if end + FOOTER_SIZE >= img.file_size:
        return  # moving blocks would not let the file shrink
    for blk, src, dst in moves:
        pwrite_all(img.fd, pread_exact(img.fd, img.record_size, src), dst)
        os.fsync(img.fd)
        img._write_bat_entries(blk, [dst // SECTOR_SIZE])
        os.fsync(img.fd)
        if src < end:  # a source left inside the file holds stale data
            img._punch_aligned(src, img.record_size)
    pwrite_all(img.fd, pack_footer(img.footer), end)
    os.fsync(img.fd)
    os.ftruncate(img.fd, end + FOOTER_SIZE)
    os.fsync(img.fd)
    img.footer_offset, img.file_size = end, end + FOOTER_SIZE
    img._next_free = img.file_size


def set_parent_locator(img: VhdImage, parent: DiskImage, parent_path: Path) -> None:
    """Point W2ku/W2ru and the unicode name at ``parent_path``; other locators are dropped.

    Locator data is rewritten in place when it fits its reserved space, else appended.
    """
    if img.header is None or img.disk_type != DiskType.DIFFERENCING:
        raise UnsupportedFeature(f"{img.path}: not a differencing disk; it has no parent")
    if parent.identity != img.parent_identity:
        raise ParentError(
            f"{img.path}: {parent_path} is not this disk's parent (identity "
            f"{parent.identity.hex()}, expected {img.parent_identity.hex()})"
        )
    with img.lock, os_errors(img.path, "set parent"):
        old = {loc.code: loc for loc in img.header.locators}
        locs: list[Locator] = []
        for code, data in locator_payloads(img.path, parent_path):
            prev = old.get(code)
            if (
                prev is not None
                and prev.space_bytes >= len(data)
                and code in (PLATFORM_W2KU, PLATFORM_W2RU)
            ):
                locs.append(Locator(code, prev.data_space, len(data), prev.data_offset))
            else:
                space = locator_space(len(data))
                offset = batlib.align_up(img._next_free, SECTOR_SIZE)
                locs.append(Locator(code, space, len(data), offset))
                pwrite_all(img.fd, pack_footer(img.footer), offset + space)
                img.footer_offset, img.file_size = offset + space, offset + space + FOOTER_SIZE
                img._next_free = img.file_size
            pwrite_all(img.fd, data.ljust(locs[-1].space_bytes, b"\0"), locs[-1].data_offset)
        os.fsync(img.fd)
        img.header = img.header.replace(locators=tuple(locs), parent_name=parent_path.name)
        pwrite_all(img.fd, pack_header(img.header), img.footer.data_offset)
        os.fsync(img.fd)
