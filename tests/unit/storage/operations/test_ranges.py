import itertools

from hypothesis import given
from hypothesis import strategies as st

from pyhv.storage.operations.ranges import is_zero, nonzero_runs, split_aligned, union


def test_split_aligned_cuts_on_multiples_of_step() -> None:
    assert list(split_aligned(100, 300, 128)) == [(100, 28), (128, 128), (256, 128), (384, 16)]
    assert list(split_aligned(0, 256, 128)) == [(0, 128), (128, 128)]
    assert list(split_aligned(5, 0, 128)) == []


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 999))
def test_split_aligned_covers_the_range_exactly(offset: int, length: int, step: int) -> None:
    pieces = list(split_aligned(offset, length, step))
    assert sum(n for _, n in pieces) == length
    pos = offset
    for off, n in pieces:
        assert off == pos and 0 < n <= step
        assert (off + n) % step == 0 or off + n == offset + length
        pos += n


def test_union_joins_overlapping_and_touching_ranges() -> None:
    assert union([(10, 5), (0, 4), (4, 2), (12, 10), (30, 0), (40, 1)]) == [
        (0, 6),
        (10, 12),
        (40, 1),
    ]
    assert union([]) == []


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 50)), max_size=20))
def test_union_covers_the_same_bytes(ranges: list[tuple[int, int]]) -> None:
    covered = {b for off, n in ranges for b in range(off, off + n)}
    merged = union(ranges)
    assert {b for off, n in merged for b in range(off, off + n)} == covered
    for (a, n), (b, _) in itertools.pairwise(merged):
        assert a + n < b


def test_nonzero_runs_judges_aligned_grains_and_joins_neighbours() -> None:
    buf = bytearray(8 * 16)
    buf[17] = 1  # grain 1 (offset 1000 + 16 is not aligned: grains are absolute)
    buf[40] = 1
    buf[127] = 1
    runs = nonzero_runs(bytes(buf), 1000, 16)
    # absolute grains: [1000,1008) [1008,1024) [1024,1040) [1040,1056) ... [1120,1128)
    assert runs == [(1008, 16), (1040, 16), (1120, 8)]
    assert nonzero_runs(bytes(64), 0, 16) == []
    assert nonzero_runs(b"\x01" * 64, 0, 16) == [(0, 64)]


def test_is_zero() -> None:
    assert is_zero(bytes(100)) and is_zero(b"")
    assert not is_zero(bytes(99) + b"\x01")
