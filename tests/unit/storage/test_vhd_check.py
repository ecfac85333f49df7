"""Test-VHD: each damaged structure gives its own line; repair only rewrites footers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.storage.vhd.check import check_vhd
from pyhv.units import MiB

BAT_OFFSET = 1536  # where pyhv puts the BAT of a new dynamic disk


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "d.vhd"
    create_image(path, CreateSpec(size=4 * MiB, block_size=MiB))
    with open_image(path, writable=True) as img:
        img.write(0, b"a" * (2 * MiB))
    assert check_vhd(path, repair=False) == []
    return path


def _poke(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def test_bat_entries_overlapping_and_past_eof(disk: Path) -> None:
    first = struct.unpack(">I", disk.read_bytes()[BAT_OFFSET : BAT_OFFSET + 4])[0]
    _poke(disk, BAT_OFFSET + 8, struct.pack(">II", first + 1, 0x00FFFFFF))
    text = "\n".join(check_vhd(disk, repair=False))
    assert "BAT entries 0 and 2 overlap" in text
    assert "BAT entry 3 points past the end of the file" in text


def test_bat_entry_into_metadata(disk: Path) -> None:
    _poke(disk, BAT_OFFSET + 8, struct.pack(">I", 2))  # sector 2: the dynamic header
    assert any("overlaps the dynamic header" in p for p in check_vhd(disk, repair=False))


def test_header_checksum(disk: Path) -> None:
    _poke(disk, 512 + 100, b"\x01")
    problems = check_vhd(disk, repair=False)
    assert len(problems) == 1 and "dynamic header: checksum mismatch" in problems[0]


def test_repair_copy_at_offset_zero(disk: Path) -> None:
    _poke(disk, 30, b"zz")
    problems = check_vhd(disk, repair=True)
    assert problems == [f"{disk}: footer copy at offset 0: " + problems[0].split(": ", 2)[2]]
    assert problems[0].endswith("(repaired)")
    assert check_vhd(disk, repair=False) == []


def test_short_file(tmp_path: Path) -> None:
    path = tmp_path / "s.vhd"
    path.write_bytes(b"conectix")
    assert "too short" in check_vhd(path, repair=False)[0]
