"""Real VHD files written by other tools (shared/testdata/vhd, see its README)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pyhv.errors import CorruptImage, ParentError
from pyhv.storage import DiskType, ExtentState, open_image, open_layer
from pyhv.storage.vhd.check import check_vhd

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "testdata" / "vhd"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared/testdata/vhd is absent")


def test_ext2_written_by_qemu_reads_exactly() -> None:
    with open_image(DATA / "ext2.vhd") as img:
        assert img.size == 4212736  # CHS capacity: creator "qemu"
        digest = hashlib.sha256(img.read(0, img.size)).hexdigest()
    assert digest == "870be7ae16c1fa8faab05c6eb9205dc9a7ae35c5f552c5cf8a267c0bc6a5cb99"
    assert check_vhd(DATA / "ext2.vhd", repair=False) == []


def test_windows_differencing_without_parent() -> None:
    with pytest.raises(ParentError, match=r"parent not found: fat-parent\.vhd \(looked in "):
        open_image(DATA / "fat-differential.vhd")
    with open_layer(DATA / "fat-differential.vhd") as img:
        info = img.info()
        assert img.disk_type == DiskType.DIFFERENCING
        assert info.size == 4194304  # creator "win ": current size, not CHS
        assert info.parent_path is not None and info.parent_path.endswith("fat-parent.vhd")
        present = [e for e in img.extents(chain=False) if e.state == ExtentState.DATA]
        assert sum(e.length for e in present) == 18 * 512
        assert present[0].offset == 134 * 512
    assert check_vhd(DATA / "fat-differential.vhd", repair=False) == []


@pytest.mark.parametrize("name", ["image.vhd", "image-differential.vhd"])
def test_bad_checksums_give_a_clear_error(name: str) -> None:
    with pytest.raises(CorruptImage, match="checksum mismatch") as e:
        open_image(DATA / name)
    assert "\n" not in str(e.value)
    problems = check_vhd(DATA / name, repair=False)
    assert problems and "checksum mismatch" in problems[0]
