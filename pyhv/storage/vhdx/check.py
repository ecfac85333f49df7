"""Test a VHDX file's own structures (``pyhv vhd check``) and repair what is safe to repair.

Safe repairs: a damaged header or region-table copy is rewritten from the good one, and a
pending log is replayed (by a writable open). Everything else is reported, one line each.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyhv.errors import PyhvError, StorageError
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.storage.vhdx.image import VhdxImage
from pyhv.storage.vhdx.region import RegionTable, pack_region_table, parse_region_table

log = logging.getLogger(__name__)


def check(path: Path, repair: bool) -> list[str]:
    path = Path(path)
    file = VhdxFile.open(path, writable=repair)
    try:
        problems, fatal = _check_copies(file, repair)
    finally:
        file.close()
    if fatal:  # no identifier or no usable header: opening would only repeat that
        return problems
    return problems + _opened_problems(path, repair)


def _check_copies(file: VhdxFile, repair: bool) -> tuple[list[str], bool]:
    """Problems with the identifier, the header copies, the region-table copies and the log;
    True when the file cannot be opened at all."""
    problems: list[str] = []
    try:
        hdr.parse_file_identifier(file.pread(0, 520))
    except PyhvError as err:
        return [f"{file.path}: {err}"], True
    headers: list[hdr.Header | None] = []
    for off in s.HEADER_OFFSETS:
        try:
            headers.append(hdr.parse_header(file.pread(off, s.HEADER_SIZE), off))
        except StorageError as err:
            headers.append(None)
            problems.append(f"{file.path}: {err}")
    try:
        slot, current = hdr.select_current(headers[0], headers[1])
    except PyhvError as err:
        return [*problems, f"{file.path}: {err}"], True
    if headers[1 - slot] is None and repair:
        file.pwrite(s.HEADER_OFFSETS[1 - slot], hdr.pack_header(current))
        file.sync()
        log.info("%s: rewrote header %d from header %d", file.path, 2 - slot, slot + 1)
        problems = problems[1:]
    tables: list[RegionTable | None] = []
    for off in s.REGION_TABLE_OFFSETS:
        try:
            tables.append(parse_region_table(file.pread(off, s.REGION_TABLE_SIZE), off))
        except PyhvError as err:
            tables.append(None)
            problems.append(f"{file.path}: {err}")
    good = next((t for t in tables if t is not None), None)
    if good is not None and None in tables and repair:
        bad = s.REGION_TABLE_OFFSETS[tables.index(None)]
        file.pwrite(bad, pack_region_table(good))
        file.sync()
        problems = [p for p in problems if f"{bad:#x}" not in p]
    if current.log_pending:
        pending = loglib.find_active_sequence(
            file.pread(current.log_offset, current.log_length), current.log_guid
        )
        if pending and not repair:
            problems.append(
                f"{file.path}: the log holds {len(pending)} entries not yet applied "
                "(run check --repair to replay them)"
            )
    return problems, False


def _opened_problems(path: Path, repair: bool) -> list[str]:
    """Metadata, BAT bounds and overlaps, as the open path validates them (a writable open
    replays a pending log)."""
    try:
        with VhdxImage(path, writable=repair) as image:
            image.flush()
    except PyhvError as err:
        return [str(err)]
    return []
