"""Property: damaged metadata never escapes as anything but a PyhvError (and never hangs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.errors import PyhvError
from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.storage.vhdx import header as hdr
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
