"""Raw images: holes as zero extents, discard, resize, compact."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import UnsupportedFeature
from pyhv.storage import CreateSpec, DiskType, ExtentState, ImageFormat, create_image, open_image
from pyhv.units import MiB


def test_extents_discard_resize(tmp_path: Path) -> None:
    path = tmp_path / "d.img"
    create_image(path, CreateSpec(size=4 * MiB))
    with open_image(path, writable=True) as img:
        assert img.format == ImageFormat.RAW
        assert [e.state for e in img.extents()] == [ExtentState.ZERO]
        img.write(MiB, b"x" * MiB)
        states = [(e.offset, e.length, e.state) for e in img.extents()]
        assert (MiB, MiB, ExtentState.DATA) in states
        img.discard(MiB, MiB // 2)
        assert img.read(MiB, MiB // 2) == bytes(MiB // 2)
        assert img.read(MiB + MiB // 2, 4) == b"xxxx"
        img.write_zeroes(MiB + MiB // 2, 10)
        assert img.read(MiB + MiB // 2, 11) == bytes(10) + b"x"
        img.resize(8 * MiB)
        assert img.size == 8 * MiB
        assert img.extents(4 * MiB)[-1].state == ExtentState.ZERO
        img.write(0, bytes(MiB))
        before = img.info().allocated_bytes
        assert img.compact() >= 0
        assert img.info().allocated_bytes <= before
        assert img.read(MiB + MiB // 2 + 10, 4) == b"xxxx"
    assert path.stat().st_size == 8 * MiB


def test_fixed_raw_is_preallocated_and_read_only_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "f.raw"
    create_image(path, CreateSpec(size=MiB, disk_type=DiskType.FIXED))
    with open_image(path) as img:
        assert img.info().allocated_bytes == MiB
        with pytest.raises(UnsupportedFeature, match="read-only"):
            img.write(0, b"x")
    with pytest.raises(UnsupportedFeature, match="parent"):
        create_image(tmp_path / "c.img", CreateSpec(size=0, parent=str(path)))
    assert not (tmp_path / "c.img").exists()
