"""Crash between the log write and the in-place update: the log carries the change."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.storage.vhdx import structs as s
from pyhv.units import MiB

MakeImage = Callable[..., Path]


class Crash(Exception):
    pass


def crash_after_log_write(img: VhdxImage) -> None:
    """Make the image 'die' right after its next log entry is durable."""
    real = img.file.pwrite

    def pwrite(offset: int, data: bytes | bytearray | memoryview) -> None:
        real(offset, data)
        if offset == img.header.log_offset:
            img.file.sync()
            raise Crash

    img.file.pwrite = pwrite  # type: ignore[method-assign]


def abandon(img: VhdxImage) -> None:
    img.file.close()
    img.closed = True


def make_pending(path: Path) -> None:
    img = VhdxImage(path, writable=True)
    img.write(MiB, b"pending!" * 512)
    crash_after_log_write(img)
    with pytest.raises(Crash):
        img.flush()
    abandon(img)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_only_open_replays_in_memory(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    make_pending(path)
    before = digest(path)
    with VhdxImage(path, writable=False) as img:
        assert img.header.log_pending
        assert img.read(MiB, 8) == b"pending!"
    assert digest(path) == before  # untouched
    problems = FORMAT.check(path, repair=False)
    assert problems and "log" in problems[0]


def test_writable_open_replays_into_the_file(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    make_pending(path)
    with VhdxImage(path, writable=True) as img:
        assert not img.header.log_pending
        assert img.read(MiB, 8) == b"pending!"
    with VhdxImage(path, writable=False) as img:
        assert not img.header.log_pending
        assert img.read(MiB, 8) == b"pending!"


def test_check_repair_replays(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    make_pending(path)
    assert FORMAT.check(path, repair=True) == []
    assert FORMAT.check(path, repair=False) == []
    with VhdxImage(path, writable=False) as img:
        assert img.read(MiB, 8) == b"pending!"


def test_crash_before_log_write_keeps_old_state(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    img = VhdxImage(path, writable=True)
    img.write(MiB, b"lost")
    abandon(img)  # data written, BAT change never logged
    with VhdxImage(path, writable=False) as img2:
        assert img2.read(MiB, 4) == bytes(4)
    assert FORMAT.check(path, repair=False) == []


def test_check_repairs_a_damaged_header_and_region_table(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    with open(path, "r+b") as f:
        f.seek(s.HEADER_1_OFFSET + 100)
        f.write(b"garbage")
        f.seek(s.REGION_TABLE_1_OFFSET + 40)
        f.write(b"garbage")
    problems = FORMAT.check(path, repair=False)
    assert any("header checksum mismatch at 0x10000" in p for p in problems)
    assert any("region table checksum mismatch at 0x30000" in p for p in problems)
    assert FORMAT.check(path, repair=True) == []
    assert FORMAT.check(path, repair=False) == []


def test_check_reports_bat_problems(make_image: MakeImage) -> None:
    path = make_image(size=4 * MiB)
    with open(path, "r+b") as f:
        f.seek(3 * MiB)
        f.write((6 | (100 << 20)).to_bytes(8, "little"))
    problems = FORMAT.check(path, repair=True)
    assert len(problems) == 1 and "BAT entry 0" in problems[0]
