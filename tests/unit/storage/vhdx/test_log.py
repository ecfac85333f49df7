import uuid

from pyhv.storage.vhdx import log as loglib
from pyhv.units import MiB

GUID = uuid.uuid4()
LOG = 1 * MiB


def entry(seq: int, sectors: dict[int, bytes], zeros: list[tuple[int, int]] | None = None) -> bytes:
    return loglib.build_log_entry(
        sequence_number=seq,
        log_guid=GUID,
        sectors=sectors,
        zeros=zeros or [],
        flushed_file_offset=8 * MiB,
        last_file_offset=9 * MiB,
        log_length=LOG,
    )


def place(*entries: tuple[int, bytes]) -> bytes:
    buf = bytearray(LOG)
    for pos, e in entries:
        buf[pos : pos + len(e)] = e
    return bytes(buf)


def test_roundtrip_data_and_zero_descriptors() -> None:
    sector = bytes(range(256)) * 16
    raw = entry(0x1122334455, {2 * MiB: sector, 2 * MiB + 4096: b"\x07" * 4096}, [(3 * MiB, 8192)])
    assert len(raw) == 3 * 4096  # one descriptor sector, two data sectors
    seq = loglib.find_active_sequence(place((0, raw)), GUID)
    assert [e.sequence_number for e in seq] == [0x1122334455]
    writes, flushed, last = loglib.replay_writes(seq)
    assert (flushed, last) == (8 * MiB, 9 * MiB)
    assert [(w.file_offset, w.data, w.length) for w in writes] == [
        (3 * MiB, None, 8192),
        (2 * MiB, sector, 4096),
        (2 * MiB + 4096, b"\x07" * 4096, 4096),
    ]


def test_damaged_or_foreign_entries_are_ignored() -> None:
    raw = bytearray(entry(5, {2 * MiB: bytes(4096)}))
    raw[5000] ^= 1
    assert loglib.find_active_sequence(place((0, bytes(raw))), GUID) == []
    assert (
        loglib.find_active_sequence(place((0, entry(5, {2 * MiB: bytes(4096)}))), uuid.uuid4())
        == []
    )


def test_highest_sequence_wins_and_runs_chain() -> None:
    a = entry(7, {2 * MiB: b"a" * 4096})
    b = loglib.build_log_entry(
        sequence_number=8,
        log_guid=GUID,
        sectors={2 * MiB: b"b" * 4096},
        zeros=[],
        flushed_file_offset=0,
        last_file_offset=0,
        log_length=LOG,
        tail=0,
    )
    old = entry(3, {2 * MiB: b"o" * 4096})
    log = place((0, a), (len(a), b), (64 * 4096, old))
    seq = loglib.find_active_sequence(log, GUID)
    assert [e.sequence_number for e in seq] == [7, 8]
    writes, _, _ = loglib.replay_writes(seq)
    assert writes[-1].data == b"b" * 4096


def test_entry_wrapping_around_the_log_end() -> None:
    raw = entry(9, {2 * MiB: b"w" * 4096})
    log = bytearray(LOG)
    pos = LOG - 4096
    log[pos:] = raw[:4096]
    log[: len(raw) - 4096] = raw[4096:]
    e = loglib.parse_log_entry(bytes(log), pos, GUID)
    assert e is not None and e.writes[0].data == b"w" * 4096


def test_too_big_for_the_log() -> None:
    import pytest

    from pyhv.errors import UnsupportedFeature

    with pytest.raises(UnsupportedFeature, match="does not fit"):
        entry(1, {2 * MiB + i * 4096: bytes(4096) for i in range(300)})


def test_many_descriptors_span_several_descriptor_sectors() -> None:
    sectors = {2 * MiB + i * 4096: bytes([i % 256]) * 4096 for i in range(200)}
    seq = loglib.find_active_sequence(place((0, entry(2, sectors))), GUID)
    writes, _, _ = loglib.replay_writes(seq)
    assert {w.file_offset: w.data for w in writes} == sectors
