"""Format detection from content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyhv.errors import InvalidFormat, NotFoundError, UsageError
from pyhv.storage import CreateSpec, DiskType, ImageFormat, create_image, detect_format, open_image
from pyhv.storage.operations import check_chain
from pyhv.storage.probe import classify

FOOTER = b"conectix" + bytes(504)


def test_classify() -> None:
    assert classify(b"vhdxfile", b"") == ImageFormat.VHDX
    assert classify(b"conectix", FOOTER) == ImageFormat.VHD
    assert classify(b"\0" * 8, FOOTER) == ImageFormat.VHD  # fixed: footer only
    assert classify(b"\0" * 8, b"\0" + FOOTER[:511]) == ImageFormat.VHD  # legacy 511 bytes
    assert classify(b"\0" * 8, bytes(512)) == ImageFormat.RAW
    assert classify(b"", b"") == ImageFormat.RAW


def test_content_wins_over_extension(tmp_path: Path) -> None:
    fixed = tmp_path / "f.vhd"
    create_image(fixed, CreateSpec(size=1 << 20, disk_type=DiskType.FIXED))
    renamed = fixed.rename(tmp_path / "f.img")
    assert detect_format(renamed) == ImageFormat.VHD
    with open_image(renamed) as img:
        assert img.format == ImageFormat.VHD and img.size == 1 << 20


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        open_image(tmp_path / "missing.vhd")
    (tmp_path / "x.vhd").write_bytes(bytes(4096))
    with pytest.raises(InvalidFormat, match="not a VHD"):
        open_image(tmp_path / "x.vhd")
    with pytest.raises(InvalidFormat, match="directory"):
        open_image(tmp_path)
    with pytest.raises(UsageError, match="extension"):
        create_image(tmp_path / "x.qcow2", CreateSpec(size=1 << 20))


@pytest.mark.parametrize("name", ["fifo.vhd", "fifo.img"])
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, name: str) -> None:
    """Opening a FIFO blocks until a writer comes: every entry point refuses it from its type
    first (open, check, check --repair), instead of hanging."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(InvalidFormat, match="is a FIFO, not a disk image"):
        open_image(fifo)
    for repair in (False, True):
        (line,) = check_chain(fifo, repair=repair)
        assert line.endswith("is a FIFO, not a disk image")
    with pytest.raises(InvalidFormat, match="character device"):
        detect_format("/dev/null")
