"""Crash at every write of an operation: afterwards the image opens, checks clean after the
next writable open, and shows either the old or the new state."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.units import GiB, MiB

MakeImage = Callable[..., Path]


class Crash(Exception):
    pass


def arm(img: VhdxImage, budget: int) -> None:
    """Let ``budget`` file mutations (write, truncate) through, then 'lose power'."""
    count = [0]
    for name in ("pwrite", "truncate"):
        real = getattr(img.file, name)

        def wrapped(*args: object, _real: Callable[..., None] = real) -> None:
            count[0] += 1
            if count[0] > budget:
                raise Crash
            _real(*args)

        setattr(img.file, name, wrapped)


def abandon(img: VhdxImage) -> None:
    img.file.close()
    img.closed = True


def snapshot(path: Path) -> tuple[int, bytes]:
    with VhdxImage(path, writable=False) as img:
        return img.size, img.read(0, min(img.size, 8 * MiB))


def run_every_crash_point(
    pristine: Path, work: Path, operation: Callable[[VhdxImage], None]
) -> int:
    old = snapshot(pristine)
    shutil.copy(pristine, work)
    with VhdxImage(work, writable=True) as img:
        operation(img)
    new = snapshot(work)
    budget = 0
    while True:
        shutil.copy(pristine, work)
        img = VhdxImage(work, writable=True)
        arm(img, budget)
        try:
            operation(img)
            img.close()
            return budget
        except Crash:
            abandon(img)
        seen = snapshot(work)  # read-only: replays in memory
        assert seen in (old, new), f"crash after {budget} writes: neither old nor new"
        with VhdxImage(work, writable=True):
            pass
        assert FORMAT.check(work, repair=False) == []
        assert snapshot(work) == seen
        budget += 1


@pytest.fixture
def pristine(make_image: MakeImage) -> Path:
    path = make_image(size=8 * MiB, block_size=MiB)
    with VhdxImage(path, writable=True) as img:
        for block in (0, 2, 5):
            img.write(block * MiB + 100, bytes([block + 1]) * 5000)
        img.write_zeroes(2 * MiB, MiB)
    return path


def test_write_allocating_blocks(pristine: Path, tmp_path: Path) -> None:
    def op(img: VhdxImage) -> None:
        img.write(3 * MiB - 10, b"\x77" * (2 * MiB))

    assert run_every_crash_point(pristine, tmp_path / "w.vhdx", op) > 5


@pytest.mark.slow
def test_resize_relocating_the_bat(pristine: Path, tmp_path: Path) -> None:
    assert run_every_crash_point(pristine, tmp_path / "r.vhdx", lambda i: i.resize(200 * GiB))


def test_shrink(pristine: Path, tmp_path: Path) -> None:
    assert run_every_crash_point(pristine, tmp_path / "s.vhdx", lambda i: i.resize(6 * MiB))


def test_compact(pristine: Path, tmp_path: Path) -> None:
    assert run_every_crash_point(pristine, tmp_path / "c.vhdx", lambda i: i.compact() and None)


def test_differencing_write(make_image: MakeImage, tmp_path: Path) -> None:
    base = make_image(size=4 * MiB, block_size=MiB)
    with VhdxImage(base, writable=True) as img:
        img.write(0, b"\x01" * (4 * MiB))
    child = make_image(parent=base, block_size=MiB)

    def op(img: VhdxImage) -> None:
        img.attach_parent(VhdxImage(base, writable=False))
        img.write(MiB + 700, b"\x02" * 3000)
        img.write(3 * MiB, b"\x03" * MiB)

    budget = 0
    work = tmp_path / "d.avhdx"
    while True:
        shutil.copy(child, work)
        img = VhdxImage(work, writable=True)
        arm(img, budget)
        try:
            op(img)
            img.close()
            break
        except Crash:
            abandon(img)
        with VhdxImage(work, writable=False) as ro:
            ro.attach_parent(VhdxImage(base, writable=False))
            data = ro.read(0, 4 * MiB)
        assert data[MiB + 700 : MiB + 3700] in (b"\x01" * 3000, b"\x02" * 3000)
        assert data[3 * MiB :] in (b"\x01" * MiB, b"\x03" * MiB)
        assert data[: MiB + 700] == b"\x01" * (MiB + 700)
        with VhdxImage(work, writable=True):
            pass
        assert FORMAT.check(work, repair=False) == []
        budget += 1
    assert budget > 3
