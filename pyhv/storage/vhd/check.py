"""Test-VHD for one VHD file: every structure checked, one line per problem.

Repair is limited to what cannot lose data: a bad footer (end of file or the copy at offset 0)
is rewritten from the good one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.storage.fileio import os_errors, pread_exact, pwrite_all
from pyhv.storage.vhd import bat as batlib
from pyhv.storage.vhd.footer import (
    Footer,
    footer_problems,
    is_resize_lag,
    parse_footer,
    same_fields,
)
from pyhv.storage.vhd.header import DynamicHeader, parse_header
from pyhv.storage.vhd.structs import (
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_FIXED,
    FEATURES_RESERVED,
    FOOTER_COOKIE,
    FOOTER_SIZE,
    HEADER_SIZE,
    NO_DATA_OFFSET,
)


def check_vhd(path: Path, repair: bool) -> list[str]:
    """Problems in ``path`` (its own structures, not its parents); [] when sound."""
    with os_errors(path, "check"):
        fd = os.open(path, os.O_RDWR if repair else os.O_RDONLY)
        try:
            return _Checker(path, fd, repair).run()
        finally:
            os.close(fd)


class _Checker:
    def __init__(self, path: Path, fd: int, repair: bool) -> None:
        self.path, self.fd, self.repair = path, fd, repair
        self.problems: list[str] = []
        self.file_size = os.fstat(fd).st_size
        self.footer_offset = self.file_size - FOOTER_SIZE

    def report(self, line: str) -> None:
        self.problems.append(f"{self.path}: {line}")

    def run(self) -> list[str]:
        if self.file_size < FOOTER_SIZE:
            self.report(f"file too short for a VHD ({self.file_size} bytes)")
            return self.problems
        footer = self._footers()
        if footer is None:
            return self.problems
        self._footer_fields(footer)
        if footer.disk_type == DISK_TYPE_FIXED:
            if footer.current_size > self.footer_offset:
                self.report(f"truncated: {footer.current_size} bytes of data expected")
            return self.problems
        header = self._header(footer)
        if header is not None:
            self._bat(footer, header)
            self._locators(footer, header)
        return self.problems

    def _footers(self) -> Footer | None:
        end = self.file_size - FOOTER_SIZE
        tail = pread_exact(self.fd, FOOTER_SIZE, end)
        head = pread_exact(self.fd, FOOTER_SIZE, 0)
        legacy = not tail.startswith(FOOTER_COOKIE) and tail[1:].startswith(FOOTER_COOKIE)
        if legacy:  # a 511-byte footer (before Virtual PC 2004): its copy is 511 bytes too
            end, tail, head = end + 1, tail[1:], head[:-1]
        self.footer_offset = end
        tail_bad = footer_problems(tail)
        head_is_copy = head.startswith(FOOTER_COOKIE)
        if not tail_bad:
            footer = self._parse(tail, "legacy 511-byte footer" if legacy else "footer")
            if footer is not None and footer.disk_type != DISK_TYPE_FIXED and head != tail:
                why = footer_problems(head)
                parsed = None if why else parse_footer(head)
                if parsed is not None and same_fields(parsed, footer):
                    return footer  # only reserved bytes differ
                if parsed is not None and is_resize_lag(parsed, footer):
                    if self.repair:  # benign: an interrupted resize; a flush refreshes it too
                        self._fix("footer copy at offset 0 predates the last resize", tail, 0)
                    return footer
                why = why or ["differs from the footer at end of file"]
                self._fix(f"footer copy at offset 0: {why[0]}", tail, 0)
            return footer
        if head_is_copy and not footer_problems(head):
            footer = self._parse(head, "footer copy")
            if footer is not None and footer.disk_type != DISK_TYPE_FIXED:
                self._fix(f"footer at end of file: {tail_bad[0]}", head, end)
                return footer
        copy = f"; copy at offset 0: {footer_problems(head)[0]}" if head_is_copy else ""
        self.report(f"footer at end of file: {tail_bad[0]}{copy}")
        return None

    def _parse(self, buf: bytes, what: str) -> Footer | None:
        try:
            return parse_footer(buf)
        except PyhvError as e:
            self.report(f"{what}: {e}")
            return None

    def _fix(self, line: str, good: bytes, offset: int) -> None:
        if self.repair:
            pwrite_all(self.fd, good, offset)
            os.fsync(self.fd)
            line += " (repaired)"
        self.report(line)

    def _footer_fields(self, f: Footer) -> None:
        if not f.features & FEATURES_RESERVED:
            self.report(f"footer features {f.features:#x} lack the reserved bit 0x2")
        if f.version != 0x00010000:
            self.report(f"footer file format version {f.version:#010x} is not 0x00010000")
        fixed = f.disk_type == DISK_TYPE_FIXED
        if fixed and f.data_offset != NO_DATA_OFFSET:
            self.report(f"fixed disk with data offset {f.data_offset:#x} (expected all ones)")
        if not any(f.unique_id):
            self.report("footer unique id is zero")
        if not f.geometry.is_max and f.geometry.capacity > f.current_size:
            g = f.geometry
            self.report(
                f"geometry {g.cylinders}/{g.heads}/{g.sectors_per_track} addresses more than"
                f" the current size {f.current_size}"
            )

    def _header(self, f: Footer) -> DynamicHeader | None:
        if f.data_offset + HEADER_SIZE > self.file_size:
            self.report(f"dynamic header offset {f.data_offset:#x} is past the end of file")
            return None
        try:
            h = parse_header(pread_exact(self.fd, HEADER_SIZE, f.data_offset))
        except PyhvError as e:
            self.report(str(e))
            return None
        if h.data_offset != NO_DATA_OFFSET:
            self.report(f"dynamic header data offset {h.data_offset:#x} is not all ones")
        needed = batlib.entries_for(f.virtual_size, h.block_size)
        if h.max_table_entries < needed:
            self.report(f"BAT has {h.max_table_entries} entries, the disk size needs {needed}")
        if h.table_offset + batlib.bat_bytes(h.max_table_entries) > self.file_size:
            self.report(f"BAT at {h.table_offset:#x} runs past the end of file")
            return None
        if f.disk_type != DISK_TYPE_DIFFERENCING and (any(h.parent_unique_id) or h.parent_name):
            self.report("parent fields are set in a disk that is not differencing")
        return h

    def _reserved(self, f: Footer, h: DynamicHeader) -> list[tuple[int, int, str]]:
        out = [
            (0, FOOTER_SIZE, "footer copy"),
            (f.data_offset, f.data_offset + HEADER_SIZE, "dynamic header"),
            (h.table_offset, h.table_offset + batlib.bat_bytes(h.max_table_entries), "BAT"),
        ]
        out += [
            (loc.data_offset, loc.data_offset + loc.space_bytes, "parent locator")
            for loc in h.locators
            if loc.data_length
        ]
        return out

    def _bat(self, f: Footer, h: DynamicHeader) -> None:
        raw = pread_exact(self.fd, h.max_table_entries * 4, h.table_offset)
        table = batlib.parse_bat(raw, h.max_table_entries)
        record = batlib.bitmap_size(h.block_size) + h.block_size
        for line in batlib.bat_problems(table, record, self._reserved(f, h), self.footer_offset):
            self.report(line)

    def _locators(self, f: Footer, h: DynamicHeader) -> None:
        used = [loc for loc in h.locators if loc.data_length]
        for i, loc in enumerate(used):
            if loc.data_offset + loc.data_length > self.file_size:
                self.report(f"parent locator {i} ({loc.code!r}) points past the end of file")
            elif loc.data_length > loc.space_bytes:
                self.report(f"parent locator {i} ({loc.code!r}) is longer than its space")
        if f.disk_type == DISK_TYPE_DIFFERENCING and not used and not h.parent_name:
            self.report("differencing disk names no parent")
