import dataclasses
import uuid

import pytest

from pyhv.errors import CorruptImage, InvalidFormat, UnsupportedFeature
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import structs as s
from pyhv.units import MiB


def make_header(seq: int = 5) -> hdr.Header:
    return hdr.Header(seq, uuid.uuid4(), uuid.uuid4(), s.NULL_GUID, 1 * MiB, 1 * MiB)


def test_roundtrip_and_checksum_covers_whole_header() -> None:
    h = make_header()
    packed = hdr.pack_header(h)
    assert len(packed) == s.HEADER_SIZE
    assert hdr.parse_header(packed, 0x10000) == h
    damaged = bytearray(packed)
    damaged[4000] ^= 1
    with pytest.raises(CorruptImage, match="checksum mismatch at 0x10000"):
        hdr.parse_header(bytes(damaged), 0x10000)


def test_checksum_ignores_its_own_field() -> None:
    # The checksum field itself counts as zeros, whatever it holds.
    assert hdr.checksum(b"\xff" * 4 + b"123456789", 0) == hdr.checksum(bytes(4) + b"123456789", 0)


def test_bad_signature_and_version() -> None:
    with pytest.raises(CorruptImage, match="signature"):
        hdr.parse_header(bytes(4096), 0)
    h = dataclasses.replace(make_header(), version=2)
    with pytest.raises(UnsupportedFeature, match="version 2"):
        hdr.parse_header(hdr.pack_header(h), 0)


def test_misaligned_log_is_corrupt() -> None:
    h = dataclasses.replace(make_header(), log_offset=4096)
    with pytest.raises(CorruptImage, match="log"):
        hdr.parse_header(hdr.pack_header(h), 0)


def test_select_current() -> None:
    a, b = make_header(5), make_header(6)
    assert hdr.select_current(a, b) == (1, b)
    assert hdr.select_current(b, a) == (0, b)
    assert hdr.select_current(None, a) == (1, a)
    assert hdr.select_current(a, None) == (0, a)
    assert hdr.select_current(a, a) == (0, a)
    with pytest.raises(CorruptImage, match="both headers have sequence number 5"):
        hdr.select_current(a, make_header(5))
    with pytest.raises(CorruptImage, match="no valid header"):
        hdr.select_current(None, None)


def test_next_header_changes_guids_as_asked() -> None:
    h = make_header()
    n = hdr.next_header(h, new_data_write=True, log_guid=uuid.uuid4())
    assert n.sequence_number == 6
    assert n.file_write_guid != h.file_write_guid
    assert n.data_write_guid != h.data_write_guid
    assert n.log_pending
    same = hdr.next_header(h, new_file_write=False)
    assert same.data_write_guid == h.data_write_guid
    assert same.file_write_guid == h.file_write_guid
    assert hdr.update_slots(0) == (1, 0)


def test_file_identifier() -> None:
    buf = hdr.pack_file_identifier("pyhv test")
    assert hdr.parse_file_identifier(buf) == "pyhv test"
    with pytest.raises(InvalidFormat):
        hdr.parse_file_identifier(b"conectix" + bytes(600))
