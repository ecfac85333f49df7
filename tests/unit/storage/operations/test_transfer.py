import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.storage.operations import transfer
from pyhv.storage.operations.transfer import copy_ranges, prefetch


def test_prefetch_yields_pieces_in_order() -> None:
    pieces = [(i * 10, 10) for i in range(50)]
    got = list(prefetch(lambda off, n: bytes([off // 10]) * n, pieces))
    assert got == [(off, bytes([off // 10]) * 10) for off, _ in pieces]


def test_prefetch_raises_reader_errors_in_the_consumer() -> None:
    def read(off: int, n: int) -> bytes:
        if off == 30:
            raise OSError("disk on fire")
        return bytes(n)

    gen = prefetch(read, [(i * 10, 10) for i in range(10)])
    with pytest.raises(OSError, match="disk on fire"):
        list(gen)


def test_prefetch_stops_its_thread_when_the_consumer_quits() -> None:
    gen = prefetch(lambda off, n: bytes(n), [(i, 1) for i in range(10_000)])
    next(gen)
    gen.close()  # must not hang on a full queue


def test_copy_to_fresh_target_skips_zero_grains(monkeypatch: pytest.MonkeyPatch, mem) -> None:
    monkeypatch.setattr(transfer, "CHUNK", 4096)
    monkeypatch.setattr(transfer, "MIN_HOLE", 1024)
    src = mem(16384)
    payload = os.urandom(512)
    src.write(1024, payload)
    src.write(9000, b"x")
    dst = mem(16384)
    calls: list[tuple[int, int]] = []
    copy_ranges(
        src, dst, [(0, 16384)], dst_reads_zero=True, progress=lambda d, t: calls.append((d, t))
    )
    assert bytes(dst.data) == bytes(src.data)
    assert dst.writes == [(1024, 1024), (8192, 1024)]
    assert calls[0] == (0, 16384) and calls[-1] == (16384, 16384)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_copy_over_old_data_writes_zeroes_explicitly(monkeypatch: pytest.MonkeyPatch, mem) -> None:
    monkeypatch.setattr(transfer, "CHUNK", 4096)
    src = mem(8192)
    src.write(4096, b"\x07" * 4096)
    dst = mem(8192)
    dst.write(0, b"\xff" * 8192)
    copy_ranges(src, dst, [(0, 8192)], dst_reads_zero=False)
    assert bytes(dst.data) == bytes(4096) + b"\x07" * 4096
    assert dst.zero_writes == [(0, 4096)]


def test_copy_uses_block_size_of_target_as_grain(monkeypatch: pytest.MonkeyPatch, mem) -> None:
    monkeypatch.setattr(transfer, "CHUNK", 8192)
    monkeypatch.setattr(mem, "block_size", 2048)
    src = mem(8192)
    src.write(2100, b"y")
    dst = mem(8192)
    copy_ranges(src, dst, [(0, 8192)], dst_reads_zero=True)
    assert dst.writes == [(2048, 2048)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.integers(0, 63), st.integers(1, 1200), st.booleans()), max_size=8),
    st.booleans(),
)
def test_copy_reproduces_any_content(mem, writes: list[tuple[int, int, bool]], fresh: bool) -> None:
    """Whatever mix of data and zeros the source holds, the target ends up reading the same."""
    size = 64 * 512
    src, dst = mem(size), mem(size)
    for sector, n, zero in writes:
        n = min(n, size - sector * 512)
        src.write(sector * 512, bytes(n) if zero else os.urandom(n))
    if not fresh:
        dst.write(0, b"\xee" * size)
    ranges = (
        [(0, size)]
        if not fresh
        else [(e.offset, e.length) for e in src.extents() if e.state == "data"]
    )
    copy_ranges(src, dst, ranges, dst_reads_zero=fresh)
    assert bytes(dst.data) == bytes(src.data)
