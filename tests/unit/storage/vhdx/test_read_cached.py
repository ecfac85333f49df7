"""VhdxImage.read_cached: the non-blocking read the NBD provider tries on its event loop.

Whatever it returns must equal ``read()``; where it cannot answer without waiting (sector
bitmaps, a block move, data not in the page cache) it must say None. ``always_cached``
(storage conftest) makes the page cache deterministic, so the mapping is what these tests check.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage.fileio import CachedReads
from pyhv.storage.vhdx import VhdxImage
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.units import MiB

MakeImage = Callable[..., Path]
OpenChain = Callable[..., VhdxImage]


@pytest.mark.usefixtures("always_cached")
def test_present_absent_and_straddling_reads(
    make_image: MakeImage, check_ranges: Callable[..., None]
) -> None:
    path = make_image(size=6 * MiB, block_size=MiB)
    model = bytearray(6 * MiB)
    rnd = random.Random(7)
    with VhdxImage(path, writable=True) as img:
        for offset, length in ((0, MiB), (2 * MiB + 100, 5000), (4 * MiB, MiB)):
            data = rnd.randbytes(length)
            img.write(offset, data)
            model[offset : offset + length] = data
        img.write_zeroes(4 * MiB, MiB)  # released again: absent
        model[4 * MiB : 5 * MiB] = bytes(MiB)
        check_ranges(
            img,
            model,
            [
                (0, 4096),  # present block
                (MiB + 4096, 4096),  # absent block: zeros
                (MiB - 512, 1024),  # present | absent
                (2 * MiB - 2048, 4096),  # absent | present
                (MiB - 7, 2 * MiB + 14),  # three blocks, unaligned
                (0, 6 * MiB),  # everything
            ],
        )
    with VhdxImage(path, writable=False) as img:
        check_ranges(img, model, [(2 * MiB + 100, 5000), (3 * MiB - 1, 2)])


@pytest.mark.usefixtures("always_cached")
def test_differencing_child_reads_its_parent(
    make_image: MakeImage, open_chain: OpenChain, check_ranges: Callable[..., None]
) -> None:
    base = make_image(size=4 * MiB, block_size=MiB)
    model = bytearray(random.Random(1).randbytes(4 * MiB))
    with VhdxImage(base, writable=True) as img:
        img.write(0, bytes(model))
    child = make_image(parent=base, block_size=MiB)
    with open_chain([base, child]) as top:
        top.write(MiB, b"c" * MiB)  # a whole block: FULLY_PRESENT in the child
        top.write_zeroes(2 * MiB, MiB)  # ZERO in the child: zeros, not the parent's data
        model[MiB : 2 * MiB] = b"c" * MiB
        model[2 * MiB : 3 * MiB] = bytes(MiB)
        assert top.bat[top.geometry.payload_index(2)] & 7 == s.PayloadState.ZERO
        ranges = [(0, 4096), (MiB - 100, 200), (2 * MiB - 100, 200), (3 * MiB - 100, 200)]
        check_ranges(top, model, [*ranges, (0, 4 * MiB)])
        top.write(3 * MiB, b"p" * 512)  # partial: decided by the sector bitmap
        model[3 * MiB : 3 * MiB + 512] = b"p" * 512
        assert top.read_cached(3 * MiB, 4096) is None
        assert top.read_cached(3 * MiB - 100, 200) is None  # straddles into it
        assert top.read(3 * MiB - 100, 1024) == model[3 * MiB - 100 : 3 * MiB + 924]
        check_ranges(top, model, ranges[:3])
    with VhdxImage(child, writable=False) as alone:  # no parent attached: read() raises
        assert alone.read_cached(0, 512) is None


def test_declines_what_would_wait(make_image: MakeImage, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_image(size=4 * MiB, block_size=MiB)
    with VhdxImage(path, writable=True) as img:
        img.write(0, b"d" * 8192)
        monkeypatch.setattr(CachedReads, "read", lambda self, off, n: None)  # not cached
        assert img.read_cached(0, 4096) is None
        assert img.read_cached(MiB - 1024, 2048) is None  # the cached half alone is not enough
        assert img.read_cached(2 * MiB, 4096) == bytes(4096)  # absent: no I/O needed
        monkeypatch.setattr(CachedReads, "read", lambda self, off, n: os.pread(self.fd, n, off))
        with img._io.exclusive():  # a block move (compact, resize) is under way
            assert img.read_cached(2 * MiB, 4096) is None
        assert img.read_cached(2 * MiB, 4096) == bytes(4096)  # it is over
        assert img.read_cached(0, 4096) == b"d" * 4096
        real = img.file.pread_cached

        def moved_meanwhile(offset: int, length: int) -> bytes | None:
            with img._io.exclusive():  # a whole block move while the data was being read
                pass
            return real(offset, length)

        monkeypatch.setattr(img.file, "pread_cached", moved_meanwhile)
        assert img.read_cached(0, 4096) is None  # what was read across the move is dropped
        monkeypatch.setattr(img.layout, "bat", img.bat[:1])  # as seen while a shrink swaps it
        assert img.read_cached(3 * MiB, 4096) is None
        monkeypatch.undo()
        assert img.read_cached(4 * MiB - 512, 1024) is None  # past the end: read() raises
        assert img.read_cached(-512, 512) is None
    assert img.read_cached(0, 512) is None  # closed


@pytest.mark.usefixtures("always_cached")
def test_read_only_overlay_applies(make_image: MakeImage) -> None:
    """A replayed log (read-only open) overrides the file for cached reads as for pread."""
    path = make_image(size=4 * MiB)
    f = VhdxFile.open(path, writable=False)
    try:
        f.overlay[8192] = b"o" * 4096
        got = f.pread_cached(8000, 300)
        assert got == f.pread(8000, 300) and got is not None and got.endswith(b"o" * 108)
        assert f.pread_cached(0, 512) == f.pread(0, 512)
    finally:
        f.close()
