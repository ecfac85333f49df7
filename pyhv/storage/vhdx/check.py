"""Test a VHDX file's own structures (``pyhv vhd check``) and repair what is safe to repair.

Safe repairs: a damaged header or region-table copy is rewritten from the good one, and a
pending log is replayed (by a writable open). Everything else is reported, one line each.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyhv.errors import PyhvError, StorageError
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.image import VhdxImage, os_errors
from pyhv.storage.vhdx.region import RegionTable, pack_region_table, parse_region_table

log = logging.getLogger(__name__)


def _read(fd: int, offset: int, length: int) -> bytes:
    return os.pread(fd, length, offset)


def check(path: Path, repair: bool) -> list[str]:
    path = Path(path)
    with os_errors(path, "open"):
        fd = os.open(path, os.O_RDWR if repair else os.O_RDONLY)
    try:
        with os_errors(path, "check"):
            problems = _check_copies(fd, path, repair)
    finally:
        os.close(fd)
    if problems is None:  # identifier or both copies of something unusable: nothing more to do
        return _opened_problems(path, False) or ["vhdx: damaged beyond repair"]
    return problems + _opened_problems(path, repair)


def _check_copies(fd: int, path: Path, repair: bool) -> list[str] | None:
    problems: list[str] = []
    try:
        hdr.parse_file_identifier(_read(fd, 0, 520))
    except PyhvError as err:
        return [str(err)]
    headers: list[hdr.Header | None] = []
    for off in s.HEADER_OFFSETS:
        try:
            headers.append(hdr.parse_header(_read(fd, off, s.HEADER_SIZE), off))
        except StorageError as err:
            headers.append(None)
            problems.append(str(err))
    try:
        slot, current = hdr.select_current(headers[0], headers[1])
    except PyhvError as err:
        return [*problems, str(err)]
    if headers[1 - slot] is None and repair:
        os.pwrite(fd, hdr.pack_header(current), s.HEADER_OFFSETS[1 - slot])
        os.fsync(fd)
        log.info("%s: rewrote header %d from header %d", path, 2 - slot, slot + 1)
        problems = problems[1:]
    tables: list[RegionTable | None] = []
    for off in s.REGION_TABLE_OFFSETS:
        try:
            tables.append(parse_region_table(_read(fd, off, s.REGION_TABLE_SIZE), off))
        except PyhvError as err:
            tables.append(None)
            problems.append(str(err))
    good = next((t for t in tables if t is not None), None)
    if good is not None and None in tables and repair:
        bad = s.REGION_TABLE_OFFSETS[tables.index(None)]
        os.pwrite(fd, pack_region_table(good), bad)
        os.fsync(fd)
        problems = [p for p in problems if f"{bad:#x}" not in p]
    if current.log_pending:
        pending = loglib.find_active_sequence(
            _read(fd, current.log_offset, current.log_length), current.log_guid
        )
        if pending and not repair:
            problems.append(
                f"vhdx: the log holds {len(pending)} entries not yet applied "
                "(run check --repair to replay them)"
            )
    return problems


def _opened_problems(path: Path, repair: bool) -> list[str]:
    """Metadata, BAT bounds and overlaps, as the open path validates them (a writable open
    replays a pending log)."""
    try:
        with VhdxImage(path, writable=repair) as image:
            image.flush()
    except PyhvError as err:
        return [str(err)]
    return []
