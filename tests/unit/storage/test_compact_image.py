"""``compact_image`` (Optimize-VHD): which disks it compacts and which it refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pyhv.errors import UnsupportedFeature
from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.operations import compact_image
from pyhv.units import MiB


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_blocks


@pytest.mark.parametrize(("ext", "fmt"), [("vhd", "VHD"), ("vhdx", "VHDX")])
def test_fixed_disk_is_refused_and_left_alone(tmp_path: Path, ext: str, fmt: str) -> None:
    """Optimize-VHD refuses fixed disks; this used to succeed with "gave back 0 B"."""
    path = tmp_path / f"fixed disk.{ext}"
    create_image(path, CreateSpec(size=4 * MiB, disk_type=DiskType.FIXED))
    with open_image(path, writable=True) as img:
        img.write(MiB, b"data" * 1024)
        img.write(2 * MiB, bytes(MiB))  # zeros a dynamic disk would give back
        img.flush()
    before = fingerprint(path)
    with pytest.raises(UnsupportedFeature) as err:
        compact_image(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot compact a fixed {fmt} disk")
    assert "only dynamic and differencing disks can be compacted" in message
    assert f"pyhv vhd convert '{path}' NEW.{ext} --dynamic" in message
    assert err.value.exit_code == 1
    assert fingerprint(path) == before
    with open_image(path) as img:
        assert img.read(MiB, 4096) == b"data" * 1024


@pytest.mark.parametrize("ext", ["vhd", "vhdx"])
def test_dynamic_and_differencing_of_a_fixed_parent_still_compact(tmp_path: Path, ext: str) -> None:
    base, child = tmp_path / f"base.{ext}", tmp_path / f"child.a{ext}"
    create_image(base, CreateSpec(size=8 * MiB, disk_type=DiskType.FIXED))
    create_image(child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)))
    with open_image(child, writable=True) as img:
        img.write(0, bytes(4 * MiB))  # zeros over parent zeros: may go
        img.flush()
    before = child.stat().st_size
    assert compact_image(child) == before - child.stat().st_size > 0
    dynamic = tmp_path / f"d.{ext}"
    create_image(dynamic, CreateSpec(size=8 * MiB, block_size=2 * MiB))
    with open_image(dynamic, writable=True) as img:
        img.write(0, os.urandom(4 * MiB))
        img.write(0, bytes(4 * MiB))
        img.flush()
    assert compact_image(dynamic) > 0


@pytest.mark.parametrize("kind", [DiskType.FIXED, DiskType.DYNAMIC])
def test_raw_gets_holes_punched_fixed_or_not(tmp_path: Path, kind: DiskType) -> None:
    """Raw has no allocation table but the file system's: compaction punches holes (kept)."""
    path = tmp_path / "d.img"
    create_image(path, CreateSpec(size=4 * MiB, disk_type=kind))
    with open_image(path, writable=True) as img:
        img.write(0, b"x" * MiB + bytes(2 * MiB))
        img.flush()
        allocated = img.info().allocated_bytes
    freed = compact_image(path)
    assert freed >= 0
    with open_image(path) as img:
        assert img.info().allocated_bytes == allocated - freed
        assert img.read(0, 3 * MiB) == b"x" * MiB + bytes(2 * MiB)
    assert path.stat().st_size == 4 * MiB
