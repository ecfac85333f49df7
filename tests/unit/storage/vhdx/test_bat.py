import random

import pytest

from pyhv.errors import CorruptImage
from pyhv.storage.vhdx import bat as b
from pyhv.storage.vhdx import structs as s
from pyhv.units import GiB, MiB


@pytest.mark.parametrize(
    ("block", "ratio"),
    [(1 * MiB, 4096), (2 * MiB, 2048), (8 * MiB, 512), (32 * MiB, 128), (256 * MiB, 16)],
)
def test_chunk_ratio_512(block: int, ratio: int) -> None:
    assert b.BatGeometry(block, 512, GiB, False).chunk_ratio == ratio


def test_chunk_ratio_4096() -> None:
    assert b.BatGeometry(32 * MiB, 4096, GiB, False).chunk_ratio == 1024


def test_interleave_and_counts() -> None:
    # 256 MiB blocks: 16 payload blocks per chunk; a 10 GiB disk has 40 blocks, 3 chunks.
    g = b.BatGeometry(256 * MiB, 512, 10 * GiB, False)
    assert g.payload_blocks == 40
    assert g.payload_index(15) == 15
    assert g.payload_index(16) == 17  # entry 16 is the first sector bitmap entry
    assert g.bitmap_index(0) == 16
    assert g.is_bitmap_index(16) and not g.is_bitmap_index(17)
    assert g.entry_count == 40 + 39 // 16
    d = b.BatGeometry(256 * MiB, 512, 10 * GiB, True)
    assert d.entry_count == 3 * 17
    assert d.bitmap_location(17) == (1, 1 * (256 * MiB // 512) // 8)


def test_entry_pack() -> None:
    e = b.pack_entry(s.PayloadState.FULLY_PRESENT, 5 * MiB)
    assert e & s.BAT_STATE_MASK == 6 and b.entry_offset(e) == 5 * MiB


def geometry() -> b.BatGeometry:
    return b.BatGeometry(1 * MiB, 512, 4 * MiB, False)


def full(offset: int) -> int:
    return b.pack_entry(s.PayloadState.FULLY_PRESENT, offset)


def test_validate_ok_and_errors() -> None:
    g = geometry()
    reserved = [(0, MiB, "the header section"), (1 * MiB, 2 * MiB, "the log")]
    b.validate_bat([full(2 * MiB), 0, full(3 * MiB), 2], g, 4 * MiB, reserved, 0x300000)
    with pytest.raises(
        CorruptImage, match=r"BAT entry 0 \(0x6\) at 0x300000 points into the header"
    ):
        b.validate_bat([full(0), 0, 0, 0], g, 4 * MiB, reserved, 0x300000)
    with pytest.raises(CorruptImage, match="after the end of the file"):
        b.validate_bat([full(9 * MiB), 0, 0, 0], g, 4 * MiB, reserved, 0)
    with pytest.raises(CorruptImage, match="overlapping"):
        b.validate_bat([full(2 * MiB), full(2 * MiB), 0, 0], g, 4 * MiB, reserved, 0)
    with pytest.raises(CorruptImage, match="overlapping"):
        b.validate_bat([full(1 * MiB), 0, 0, 0], g, 4 * MiB, reserved, 0)
    with pytest.raises(CorruptImage, match="invalid payload state 4"):
        b.validate_bat([4, 0, 0, 0], g, 4 * MiB, reserved, 0)
    with pytest.raises(CorruptImage, match="partially present"):
        b.validate_bat([b.pack_entry(7, 2 * MiB), 0, 0, 0], g, 4 * MiB, reserved, 0)


def test_parse_bat_too_short() -> None:
    with pytest.raises(CorruptImage, match="needs 4"):
        b.parse_bat(bytes(16), geometry())
    assert b.parse_bat(b.pack_bat([1, 2, 3, 4]), geometry()) == [1, 2, 3, 4]


def naive_runs(bitmap: bytes, first: int, count: int) -> list[tuple[bool, int]]:
    runs: list[tuple[bool, int]] = []
    for i in range(first, first + count):
        bit = bool(bitmap[i // 8] >> (i % 8) & 1)
        if runs and runs[-1][0] == bit:
            runs[-1] = (bit, runs[-1][1] + 1)
        else:
            runs.append((bit, 1))
    return runs


def test_bitmap_runs_match_naive() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        raw = bytes(rnd.choice([0, 0xFF, rnd.randrange(256)]) for _ in range(32))
        first = rnd.randrange(0, 200)
        count = rnd.randrange(1, 256 - first)
        assert b.bitmap_runs(raw, first, count) == naive_runs(raw, first, count)


def test_set_bitmap_bits_lsb_first() -> None:
    bm = bytearray(8)
    b.set_bitmap_bits(bm, 3, 20)
    assert naive_runs(bytes(bm), 0, 64) == [(False, 3), (True, 20), (False, 41)]
    assert bm[0] == 0b11111000
