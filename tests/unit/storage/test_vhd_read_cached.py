"""VhdImage.read_cached: equal to read() wherever it answers; None where it would need a bitmap.

``always_cached`` (storage conftest) makes the page cache deterministic, so the block mapping is
what is checked.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.fileio import CachedReads
from pyhv.units import MiB

RANGES = [(0, 4096), (MiB - 512, 1024), (MiB + 4096, 4096), (2 * MiB - 7, MiB + 14), (0, 4 * MiB)]


@pytest.mark.usefixtures("always_cached")
@pytest.mark.parametrize("disk_type", [DiskType.FIXED, DiskType.DYNAMIC])
def test_fixed_and_dynamic(
    tmp_path: Path, disk_type: DiskType, check_ranges: Callable[..., None]
) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=4 * MiB, disk_type=disk_type, block_size=MiB))
    model = bytearray(4 * MiB)
    data = random.Random(5).randbytes(MiB + 512)
    with open_image(path, writable=True) as img:
        for offset in (0, 2 * MiB + 512):  # block 1 stays unallocated
            img.write(offset, data)
            model[offset : offset + len(data)] = data
        check_ranges(img, model, RANGES)
        assert img.read_cached(4 * MiB - 512, 1024) is None  # past the end
    assert img.read_cached(0, 512) is None  # closed


@pytest.mark.usefixtures("always_cached")
def test_differencing_reads_parent_where_unallocated(
    tmp_path: Path, check_ranges: Callable[..., None]
) -> None:
    base, child = tmp_path / "base.vhd", tmp_path / "child.avhd"
    create_image(base, CreateSpec(size=4 * MiB, block_size=MiB))
    model = bytearray(random.Random(6).randbytes(4 * MiB))
    with open_image(base, writable=True) as img:
        img.write(0, bytes(model))
    create_image(child, CreateSpec(size=0, parent=str(base), block_size=MiB))
    with open_image(child, writable=True) as img:
        img.write(2 * MiB, b"c" * 4096)  # allocates block 2 (sector bitmap decides)
        model[2 * MiB : 2 * MiB + 4096] = b"c" * 4096
        check_ranges(img, model, [(0, 4096), (MiB - 512, 1024), (0, 2 * MiB)])
        assert img.read_cached(2 * MiB, 512) is None
        assert img.read_cached(2 * MiB - 512, 1024) is None
        assert img.read(2 * MiB - 512, 1024) == model[2 * MiB - 512 : 2 * MiB + 512]


def test_not_cached_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=4 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"x" * 4096)
        monkeypatch.setattr(CachedReads, "read", lambda self, off, n: None)
        assert img.read_cached(0, 4096) is None
        assert img.read_cached(MiB, 4096) == bytes(4096)  # unallocated: no I/O needed
