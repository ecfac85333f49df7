"""Structural changes of an open VHDX: resize, compact, re-pointing the parent locator.

Each change is ordered so a crash leaves the old or the new disk: new space is written and
synced before anything points at it, and every change of the BAT, metadata or region tables
goes through one log transaction. These are :class:`VhdxImage`'s methods, kept apart so the
image module stays about reading and writing; file access goes through ``image.file``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pyhv.errors import ParentError, UnsupportedFeature, UsageError
from pyhv.storage.image import DiskImage, DiskType, ExtentState
from pyhv.storage.vhdx import bat as batlib
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.metadata import pack_parent_locator, replace_item
from pyhv.storage.vhdx.parent import build_locator
from pyhv.storage.vhdx.region import Region, RegionTable, pack_region_table
from pyhv.units import MiB, format_size

if TYPE_CHECKING:
    from pyhv.storage.vhdx.image import VhdxImage

SECTOR = s.LOG_SECTOR_SIZE
Progress = Callable[[int, int], None]
COPY_CHUNK = 8 * MiB


def changed_sectors(old: bytes, new: bytes, base: int) -> dict[int, bytes]:
    """File offset → new 4 KiB sector for every sector of ``new`` that differs from ``old``."""
    return {
        base + i: new[i : i + SECTOR]
        for i in range(0, len(new), SECTOR)
        if new[i : i + SECTOR] != old[i : i + SECTOR]
    }


def rewrite_metadata(image: VhdxImage, region: bytes, data: bool) -> None:
    md = image.regions.metadata
    image._transaction(changed_sectors(image.layout.metadata, region, md.file_offset), data)
    image.layout.set_metadata(region)


def set_parent_locator(image: VhdxImage, parent: DiskImage, parent_path: Path) -> None:
    """:raises ParentError: not differencing, or ``parent`` is not this disk's parent."""
    image._require_writable()
    if not image.params.has_parent:
        raise ParentError(f"{image.path}: not a differencing disk")
    if not image.accepts_parent_identity(parent.identity):
        raise ParentError(f"{image.path}: {parent_path} is not its parent (identity mismatch)")
    with image._io.exclusive(), image.lock:
        image._commit()
        old = image.params.parent_locator
        fresh = build_locator(image.parent_identity, parent_path, image.path)
        locator = {k: v for k, v in old.items() if k.startswith("parent_linkage")}
        locator.update({k: v for k, v in fresh.items() if k != "parent_linkage"})
        region = replace_item(
            image.layout.metadata,
            image.layout.items,
            s.PARENT_LOCATOR_GUID,
            pack_parent_locator(locator),
        )
        rewrite_metadata(image, region, data=False)


def resize(image: VhdxImage, new_size: int) -> None:
    """Grow or shrink the virtual disk (never below :meth:`VhdxImage.minimum_size`).

    :raises UsageError: size out of range. :raises UnsupportedFeature: differencing disks.
    """
    image._require_writable()
    lss = image.logical_sector_size
    new_size = -(-new_size // lss) * lss
    if image.params.has_parent:
        raise UnsupportedFeature(f"{image.path}: resize the base disk, not a differencing disk")
    if new_size <= 0 or new_size > s.MAX_VIRTUAL_DISK_SIZE:
        raise UsageError(f"{image.path}: size {new_size} is outside 1 byte – 64 TiB")
    with image._io.exclusive(), image.lock:
        image._commit()
        minimum = image.minimum_size()
        if new_size < minimum:
            raise UsageError(
                f"{image.path}: cannot shrink to {format_size(new_size)}: data ends at "
                f"{minimum} bytes; the minimum size is {format_size(minimum)}"
            )
        if new_size == image.size:
            return
        old_g = image.geometry
        new_g = dataclasses.replace(old_g, virtual_size=new_size)
        bat = list(image.bat[: new_g.entry_count]) + [0] * (new_g.entry_count - len(image.bat))
        region = replace_item(
            image.layout.metadata,
            image.layout.items,
            s.VIRTUAL_DISK_SIZE_GUID,
            new_size.to_bytes(8, "little"),
        )
        md_sectors = changed_sectors(
            image.layout.metadata, region, image.regions.metadata.file_offset
        )
        with _space_given_back_on_failure(image):
            if new_size > image.size and image.disk_type is DiskType.FIXED:
                _allocate_fixed_blocks(image, bat, old_g, new_g)
            bat_sectors = _bat_changes(image, bat)
            capacity = image.header.log_length // SECTOR - 4
            moved = None
            if (
                new_g.bat_bytes > image.regions.bat.length
                or len(bat_sectors) + len(md_sectors) > capacity
            ):
                moved = _write_bat_copy(image, bat, new_g)
            if new_size > image.size:
                _clear_tail_of_last_block(image, old_g)
        if moved is None:
            image._transaction({**bat_sectors, **md_sectors})
        else:
            _switch_bat(image, moved, md_sectors)
        image.layout.bat = bat
        image.layout.geometry = new_g
        image.layout.set_metadata(region)
        image._bitmaps.clear()


def _bat_changes(image: VhdxImage, bat: list[int]) -> dict[int, bytes]:
    old = batlib.pack_bat(image.bat)
    new = batlib.pack_bat(bat)
    length = max(len(old), len(new))
    old, new = old.ljust(length, b"\0"), new.ljust(length, b"\0")
    base = image.regions.bat.file_offset
    out = {}
    for i in range(0, length, SECTOR):
        if old[i : i + SECTOR] != new[i : i + SECTOR]:
            out[base + i] = new[i : i + SECTOR].ljust(SECTOR, b"\0")
    return out


def _clear_tail_of_last_block(image: VhdxImage, g: batlib.BatGeometry) -> None:
    """Bytes past the old end inside the last block become visible when growing: zero them."""
    last = g.payload_blocks - 1
    entry = image.bat[g.payload_index(last)]
    used = g.block_data_length(last)
    if entry & s.BAT_STATE_MASK in batlib.PRESENT_STATES and used < g.block_size:
        image.file.write_zeros(batlib.entry_offset(entry) + used, g.block_size - used)


@contextmanager
def _space_given_back_on_failure(image: VhdxImage) -> Iterator[None]:
    """Space taken at the end of the file before the log transaction that would point at it
    is unreferenced: when a step fails (the file system's size limit, no space left) the file
    goes back to its old length, so a refused resize leaves the file as it found it."""
    alloc_end, file_size = image.layout.alloc_end, image.file.size()
    try:
        yield
    except BaseException:
        image.layout.alloc_end = alloc_end
        image.file.truncate(file_size)
        raise


def _allocate_fixed_blocks(
    image: VhdxImage, bat: list[int], old_g: batlib.BatGeometry, new_g: batlib.BatGeometry
) -> None:
    """The new blocks in one run at the end: one truncate and one fallocate for them all."""
    count = new_g.payload_blocks - old_g.payload_blocks
    if not count:
        return
    first = image._allocate(count * new_g.block_size)
    for i, block in enumerate(range(old_g.payload_blocks, new_g.payload_blocks)):
        offset = first + i * new_g.block_size
        bat[new_g.payload_index(block)] = batlib.pack_entry(s.PayloadState.FULLY_PRESENT, offset)
    image.file.preallocate(first, image.layout.alloc_end - first)


def _write_bat_copy(image: VhdxImage, bat: list[int], g: batlib.BatGeometry) -> Region:
    """The BAT written to fresh space at the end (with room to grow); nothing points at it yet."""
    length = max(batlib.bat_region_length(g), 2 * image.regions.bat.length)
    offset = image._allocate(length)
    image.file.pwrite(offset, batlib.pack_bat(bat))
    return Region(s.BAT_REGION_GUID, offset, length, image.regions.bat.required)


def _switch_bat(image: VhdxImage, moved: Region, md_sectors: dict[int, bytes]) -> None:
    """Switch the region tables to the BAT copy and the size in one log transaction; the old
    BAT region becomes free space."""
    old = image.regions
    table = RegionTable(moved, old.metadata, old.others)
    packed = pack_region_table(table)
    sectors = dict(md_sectors)
    for base in s.REGION_TABLE_OFFSETS:
        for i in range(0, len(packed), SECTOR):
            sectors[base + i] = packed[i : i + SECTOR]
    image._transaction(sectors)
    image.layout.regions = table
    name = f"region {s.BAT_REGION_GUID}"
    others = [r for r in image.layout.reserved if r[2] != name]
    image.layout.reserved = [*others, (moved.file_offset, moved.end, name)]


def _block_reads_zero(image: VhdxImage, block: int) -> bool:
    g = image.geometry
    start, length = block * g.block_size, g.block_data_length(block)
    pos = 0
    while pos < length:
        n = min(COPY_CHUNK, length - pos)
        if image.read(start + pos, n).count(0) != n:
            return False
        pos += n
    if image.params.has_parent:
        parent = image.parent
        if parent is None:
            return False
        # NOT_PRESENT exposes the parent again, so the parent must read zeros here as well.
        return (
            all(e.state is ExtentState.ZERO for e in parent.extents(start, length, chain=True))
            or parent.read(start, length).count(0) == length
        )
    return True


def compact(image: VhdxImage, progress: Progress | None = None) -> int:
    """Release blocks reading all zeros, move tail blocks into holes, shrink the file.

    Returns the number of bytes the file shrank by.
    """
    image._require_writable()
    if image.disk_type is DiskType.FIXED:
        return 0
    with image._io.exclusive(), image.lock:
        image._commit()
        before = image.file.size()
        present = image._present_blocks()
        total = len(present) * 2
        for done, block in enumerate(present):
            if _block_reads_zero(image, block):
                image._release_block(block, 0)
                image._maybe_commit()
            if progress:
                progress(done + 1, total)
        image._commit()
        _pack_blocks(image, progress, len(present), total)
        image._commit()
        end = _used_end(image)
        image.layout.alloc_end = end
        if end < before:
            # The applied log entry names the old file size as flushed; a replay after the
            # truncation would take the shorter file for damage, so retire the entry first.
            image.journal.retire_entry()
            image.file.truncate(end)
            image.file.sync()
        if progress:
            progress(total, total)
        return max(0, before - image.file.size())


def _allocations(image: VhdxImage) -> list[tuple[int, int, int]]:
    """(file offset, length, BAT index) of every allocated block, lowest offset first."""
    out = []
    for index, entry in enumerate(image.bat):
        if entry & s.BAT_STATE_MASK < 6:  # nothing stored (the common case: skip quickly)
            continue
        length = image.layout.entry_length(index, entry)
        if length:
            out.append((batlib.entry_offset(entry), length, index))
    return sorted(out)


def _used_end(image: VhdxImage) -> int:
    ends = [end for _, end, _ in image.layout.reserved]
    ends += [off + length for off, length, _ in _allocations(image)]
    return -(-max(ends) // MiB) * MiB


def _pack_blocks(image: VhdxImage, progress: Progress | None, done: int, total: int) -> None:
    allocs = _allocations(image)
    fixed = sorted((start, end) for start, end, _ in image.layout.reserved)
    while allocs:
        offset, length, index = allocs[-1]
        hole = _lowest_hole(fixed + [(o, o + n) for o, n, _ in allocs[:-1]], length, offset)
        if hole is None:
            break
        allocs.pop()
        _copy(image, offset, hole, length)
        state = image.bat[index] & s.BAT_STATE_MASK
        image._set_entry(index, batlib.pack_entry(state, hole))
        allocs.append((hole, length, index))
        allocs.sort()
        if len(image._dirty_bat) >= 32:
            image._commit()
        if progress:
            progress(done, total)


def _lowest_hole(used: list[tuple[int, int]], length: int, below: int) -> int | None:
    pos = s.HEADER_SECTION_SIZE
    for start, end in sorted(used):
        if start - pos >= length and pos + length <= below:
            return pos
        pos = max(pos, -(-end // MiB) * MiB)
    return pos if pos + length <= below else None


def _copy(image: VhdxImage, src: int, dst: int, length: int) -> None:
    pos = 0
    while pos < length:
        n = min(COPY_CHUNK, length - pos)
        image.file.pwrite(dst + pos, image.file.pread(src + pos, n))
        pos += n
