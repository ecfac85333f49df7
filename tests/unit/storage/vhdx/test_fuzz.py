"""Property: damaged metadata never escapes as anything but a PyhvError (and never hangs)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.errors import PyhvError
from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage, metadata, region
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import structs as s
from pyhv.units import KiB, MiB

# (start, length) of every metadata structure pyhv's layout puts in a small image.
AREAS = [
    (0, 64),  # file identifier
    (s.HEADER_1_OFFSET, 96),
    (s.HEADER_2_OFFSET, 96),
    (s.REGION_TABLE_1_OFFSET, 96),
    (s.REGION_TABLE_2_OFFSET, 96),
    (2 * MiB, 256),  # metadata table
    (2 * MiB + 64 * KiB, 600),  # metadata items incl. parent locator
    (3 * MiB, 64),  # BAT
]


def _refresh_checksums(fd: int) -> None:
    """Recompute header and region-table CRCs so mutations reach the deeper checks."""
    for off, size, field in (
        (s.HEADER_1_OFFSET, s.HEADER_SIZE, s.HEADER_CHECKSUM_OFFSET),
        (s.HEADER_2_OFFSET, s.HEADER_SIZE, s.HEADER_CHECKSUM_OFFSET),
        (s.REGION_TABLE_1_OFFSET, s.REGION_TABLE_SIZE, s.REGION_TABLE_CHECKSUM_OFFSET),
        (s.REGION_TABLE_2_OFFSET, s.REGION_TABLE_SIZE, s.REGION_TABLE_CHECKSUM_OFFSET),
    ):
        buf = os.pread(fd, size, off)
        os.pwrite(fd, hdr.checksum(buf, field).to_bytes(4, "little"), off + field)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("fuzz")
    base = d / "base.vhdx"
    FORMAT.create(base, CreateSpec(size=3 * MiB, block_size=MiB), None)
    with VhdxImage(base, writable=True) as img:
        img.write(0, b"\x11" * 1000)
        img.write(2 * MiB, b"\x22" * 5000)
    child = d / "child.avhdx"
    with VhdxImage(base, writable=False) as p:
        FORMAT.create(
            child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)), p
        )
    with VhdxImage(child, writable=True) as img:
        img.attach_parent(VhdxImage(base, writable=False))
        img.write(700, b"\x33" * 3000)
    return base, child


mutation = st.tuples(st.integers(0, len(AREAS) - 1), st.integers(0, 599), st.integers(0, 255))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(muts=st.lists(mutation, min_size=1, max_size=6), fix_crc=st.booleans(), diff=st.booleans())
def test_mutated_metadata_gives_data_or_pyhv_error(
    images: tuple[Path, Path], muts: list[tuple[int, int, int]], fix_crc: bool, diff: bool
) -> None:
    path = images[1] if diff else images[0]
    original = path.read_bytes()
    fd = os.open(path, os.O_RDWR)
    try:
        for area, pos, value in muts:
            start, length = AREAS[area]
            os.pwrite(fd, bytes([value]), start + pos % length)
        if fix_crc:
            _refresh_checksums(fd)
        try:
            with VhdxImage(path, writable=False) as img:
                if diff:
                    img.attach_parent(VhdxImage(images[0], writable=False))
                data = img.read(0, min(img.size, 4 * MiB))
                assert len(data) == min(img.size, 4 * MiB)
                img.extents()
                img.info()
        except PyhvError as err:
            assert "\n" not in str(err)
    finally:
        os.pwrite(fd, original, 0)
        os.ftruncate(fd, len(original))
        os.close(fd)


class _Crash(Exception):
    pass


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image whose last metadata change sits in the log, not yet applied."""
    path = tmp_path_factory.mktemp("dirty") / "dirty.vhdx"
    FORMAT.create(path, CreateSpec(size=3 * MiB, block_size=MiB), None)
    img = VhdxImage(path, writable=True)
    img.write(MiB + 100, b"\x44" * 3000)
    real = img.file.pwrite

    def pwrite(offset: int, data: bytes | bytearray | memoryview) -> None:
        real(offset, data)
        if offset == img.header.log_offset:
            raise _Crash

    img.file.pwrite = pwrite  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        img.flush()
    img.file.close()
    img.closed = True
    return path


def _refresh_log_checksum(fd: int) -> None:
    head = os.pread(fd, 64, 1 * MiB)
    length = int.from_bytes(head[8:12], "little")
    if head[:4] == s.LOG_ENTRY_SIGNATURE and 0 < length <= MiB and length % 4096 == 0:
        entry = os.pread(fd, length, 1 * MiB)
        crc = hdr.checksum(entry, s.LOG_ENTRY_CHECKSUM_OFFSET)
        os.pwrite(fd, crc.to_bytes(4, "little"), 1 * MiB + 4)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    muts=st.lists(st.tuples(st.integers(0, 3 * 4096 - 1), st.integers(0, 255)), max_size=6),
    fix_crc=st.booleans(),
    writable=st.booleans(),
)
def test_mutated_log_gives_data_or_pyhv_error(
    dirty: Path, muts: list[tuple[int, int]], fix_crc: bool, writable: bool
) -> None:
    original = dirty.read_bytes()
    fd = os.open(dirty, os.O_RDWR)
    try:
        for pos, value in muts:
            os.pwrite(fd, bytes([value]), 1 * MiB + pos)
        if fix_crc:
            _refresh_log_checksum(fd)
        try:
            with VhdxImage(dirty, writable=writable) as img:
                assert len(img.read(0, img.size)) == img.size
        except PyhvError as err:
            assert "\n" not in str(err)
    finally:
        os.pwrite(fd, original, 0)
        os.ftruncate(fd, len(original))
        os.close(fd)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=0, max_size=5000), fix=st.booleans())
def test_pure_parsers_take_any_bytes(raw: bytes, fix: bool) -> None:
    """Header, region table, metadata table, locator and log parsers on arbitrary bytes."""
    header = raw.ljust(s.HEADER_SIZE, b"\0")
    table = raw.ljust(s.REGION_TABLE_SIZE, b"\0")
    if fix:  # a valid checksum lets the bytes reach the field checks
        header = header[:4] + hdr.checksum(header, 4).to_bytes(4, "little") + header[8:]
        table = table[:4] + hdr.checksum(table, 4).to_bytes(4, "little") + table[8:]
    for parse in (
        lambda: hdr.parse_header(b"head" + header[4:], 0),
        lambda: region.parse_region_table(b"regi" + table[4:], 0),
        lambda: metadata.parse_metadata_table(b"metadata" + table[8:], MiB),
        lambda: metadata.parse_parent_locator(raw),
    ):
        with contextlib.suppress(PyhvError):
            parse()
    log_area = (b"loge" + raw[4:]).ljust(64 * KiB, b"\0")
    guid = uuid.UUID(bytes_le=log_area[32:48])  # the entry's own LogGuid, so it is considered
    for entry in loglib.find_active_sequence(log_area, guid):
        assert entry.entry_length <= len(log_area)
