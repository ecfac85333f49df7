"""BAT, sector bitmap and compaction planning math."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from pyhv.storage.vhd import bat as batlib
from pyhv.storage.vhd.layout import plan_compaction, room_after


def test_sizes() -> None:
    assert batlib.bitmap_size(2 << 20) == 512
    assert batlib.bitmap_size(4096) == 512
    assert batlib.bitmap_size(4 << 20) == 1024
    assert batlib.entries_for(1000448, 2 << 20) == 1
    assert batlib.bat_bytes(513) == 2560


def test_bat_parse_pack() -> None:
    raw = batlib.pack_entries([7, 0xFFFFFFFF, 0x1005])
    assert raw == bytes.fromhex("00000007ffffffff00001005")
    assert list(batlib.parse_bat(raw, 3)) == [7, 0xFFFFFFFF, 0x1005]


def _naive_runs(bits: list[bool], first: int, count: int) -> list[tuple[int, int, bool]]:
    runs: list[tuple[int, int, bool]] = []
    for i in range(first, first + count):
        if runs and runs[-1][2] == bits[i]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, bits[i])
        else:
            runs.append((i, 1, bits[i]))
    return runs


@given(st.lists(st.booleans(), min_size=1, max_size=64), st.data())
def test_bitmap_runs_match_per_sector_reference(bits: list[bool], data: st.DataObject) -> None:
    spb = len(bits)
    raw = bytearray(batlib.bitmap_size(spb * 512))
    for i, b in enumerate(bits):
        if b:
            raw[i // 8] |= 0x80 >> (i % 8)  # MSB first
    value = batlib.bitmap_to_int(bytes(raw), spb)
    assert batlib.int_to_bitmap(value, spb, len(raw)) == bytes(raw)
    first = data.draw(st.integers(0, spb - 1))
    count = data.draw(st.integers(1, spb - first))
    assert batlib.bitmap_runs(value, first, count, spb) == _naive_runs(bits, first, count)
    mask = batlib.run_mask(first, count, spb)
    assert batlib.bitmap_runs(mask, first, count, spb) == [(first, count, True)]


def test_bat_problems_names_each_fault() -> None:
    record = 512 + 4096
    bat = array("I", [8, 9, 0xFFFFFFFF, 1000, 2])
    problems = batlib.bat_problems(bat, record, [(0, 2048, "dynamic header")], 100 * 512)
    text = "\n".join(problems)
    assert "entry 3 points past the end" in text
    assert "entries 0 and 1 overlap" in text
    assert "entry 4 (0x400) overlaps the dynamic header" in text


def test_compaction_plan_fills_holes_from_the_end() -> None:
    record = 512 + (1 << 20)
    blocks = {0: 3584, 3: 6 << 20, 5: 18 << 20}
    moves, end = plan_compaction(blocks, [(0, 2048)], record, 512, 4096)
    assert [m[0] for m in moves] == [5, 3]
    for _, src, dst in moves:
        assert dst + record <= src
        assert (dst + 512) % 4096 == 0
    assert end < 4 << 20
    assert plan_compaction({0: 3584}, [(0, 2048)], record, 512, 4096) == ([], 3584 + record)


def test_room_after() -> None:
    assert room_after(1536, [(4096, 5000)], 10000) == 4096 - 1536
    assert room_after(1536, [], 10000) == 10000 - 1536
