"""Pure VHD structures: footer, dynamic header, locators, geometry."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhv.errors import CorruptImage, InvalidFormat, PyhvError
from pyhv.storage.image import DiskType
from pyhv.storage.vhd.create import build_dynamic, new_footer
from pyhv.storage.vhd.footer import choose_footer, pack_footer, parse_footer
from pyhv.storage.vhd.geometry import Geometry, chs_for_size
from pyhv.storage.vhd.header import (
    DynamicHeader,
    Locator,
    decode_locator,
    pack_header,
    parent_candidates,
    parse_header,
    relative_locator,
)
from pyhv.units import GiB, MiB


def test_geometry_matches_windows_and_virtual_pc() -> None:
    assert chs_for_size(4 * MiB) == Geometry(120, 4, 17)  # Windows 10 4 MiB disk
    assert chs_for_size(512 * MiB) == Geometry(1040, 16, 63)  # Virtual PC 512 MiB disk
    assert chs_for_size(2040 * GiB).is_max


@given(st.integers(min_value=512, max_value=2040 * GiB))
def test_geometry_rounds_down(size: int) -> None:
    assert chs_for_size(size).capacity <= size


def test_footer_round_trip() -> None:
    f = new_footer(10 * MiB, DiskType.DYNAMIC, 512)
    buf = pack_footer(f)
    assert len(buf) == 512
    g = parse_footer(buf)
    assert g.replace(checksum=0) == f
    assert g.virtual_size == 10 * MiB


def test_footer_size_rule_follows_creator() -> None:
    f = new_footer(4 * MiB, DiskType.FIXED, 2**64 - 1)
    assert f.virtual_size == 4 * MiB  # "win " is trusted for current_size
    vpc = parse_footer(pack_footer(f.replace(creator_app=b"vpc ")))
    assert vpc.virtual_size == Geometry(120, 4, 17).capacity
    maxgeo = f.replace(creator_app=b"qemu", geometry=Geometry(65535, 16, 255))
    assert parse_footer(pack_footer(maxgeo)).virtual_size == 4 * MiB


def test_footer_checksum_and_cookie_errors() -> None:
    buf = bytearray(pack_footer(new_footer(MiB, DiskType.FIXED, 2**64 - 1)))
    buf[50] ^= 1
    with pytest.raises(CorruptImage, match="checksum mismatch"):
        parse_footer(bytes(buf))
    with pytest.raises(InvalidFormat, match="cookie"):
        parse_footer(b"x" * 512)


@settings(max_examples=300)
@given(st.binary(min_size=512, max_size=512), st.integers(0, 511))
def test_footer_parser_fails_only_with_own_errors(noise: bytes, pos: int) -> None:
    buf = bytearray(pack_footer(new_footer(MiB, DiskType.DYNAMIC, 512)))
    buf[pos] = noise[pos]
    buf[pos:] = noise[pos:] if pos > 400 else buf[pos:]
    with contextlib.suppress(PyhvError):
        parse_footer(bytes(buf))


def _header(**kw: object) -> DynamicHeader:
    base = DynamicHeader(
        table_offset=1536,
        max_table_entries=5,
        block_size=2 * MiB,
        checksum=0,
        parent_unique_id=b"\x01" * 16,
        parent_timestamp=7,
        parent_name="parent.vhd",
        locators=(Locator(b"W2ku", 4096, 20, 4096), Locator(b"W2ru", 512, 10, 8192)),
    )
    return base.replace(**kw)


def test_header_round_trip_keeps_utf16be_name_and_locators() -> None:
    h = _header(parent_name="père.vhd")
    buf = pack_header(h)
    assert buf[64:80] == "père.vhd".encode("utf-16-be")
    g = parse_header(buf)
    assert g.parent_name == "père.vhd"
    assert g.locators[:2] == h.locators
    assert g.locators[1].space_bytes == 512


def test_locator_space_reads_both_conventions() -> None:
    assert Locator(b"W2ru", 1, 10, 0).space_bytes == 512  # sectors (spec)
    assert Locator(b"W2ru", 65536, 10, 0).space_bytes == 65536  # bytes (Windows)


@settings(max_examples=300)
@given(st.integers(0, 1023), st.integers(0, 255))
def test_header_parser_fails_only_with_own_errors(pos: int, value: int) -> None:
    buf = bytearray(pack_header(_header()))
    buf[pos] = value
    with contextlib.suppress(PyhvError):
        parse_header(bytes(buf))


def test_locator_decoding_and_candidates(tmp_path: Path) -> None:
    assert decode_locator(b"W2ru", ".\\a.vhd".encode("utf-16-le")) == ".\\a.vhd"
    assert decode_locator(b"MacX", b"file:///x/a%20b.vhd") == "/x/a b.vhd"
    assert decode_locator(b"Mac ", b"blob") is None
    found = parent_candidates(
        tmp_path,
        "C:\\dir\\fat-parent.vhd",
        [(b"W2ku", "C:\\Projects\\fat-parent.vhd"), (b"W2ru", ".\\sub\\fat-parent.vhd")],
    )
    assert found == [tmp_path / "sub" / "fat-parent.vhd", tmp_path / "fat-parent.vhd"]
    assert relative_locator(tmp_path / "a", tmp_path / "b" / "p.vhd") == "..\\b\\p.vhd"
    assert relative_locator(tmp_path, tmp_path / "p.vhd") == ".\\p.vhd"


def test_dynamic_layout_matches_qemu_for_1g() -> None:
    content = build_dynamic(new_footer(GiB, DiskType.DYNAMIC, 512), 2 * MiB, None, [])
    assert len(content) == 4096  # qemu-img's 1G dynamic file, exact BAT of 512 entries
    assert content[:512] == content[-512:]
    assert parse_header(content[512:1536]).max_table_entries == 512


def test_choose_footer_prefers_end_then_copy() -> None:
    f = new_footer(MiB, DiskType.DYNAMIC, 512)
    good = pack_footer(f)
    bad = good[:100] + b"\xff" + good[101:]
    assert choose_footer(good, good, 5000).footer == parse_footer(good)
    chosen = choose_footer(good, bad, 5000)
    assert chosen.offset == 4488 and "checksum mismatch" in chosen.problems[0]
    with pytest.raises(CorruptImage, match="no valid copy"):
        choose_footer(bad, bad, 5000)
    with pytest.raises(InvalidFormat):
        choose_footer(bytes(512), bytes(512), 5000)
    fixed = pack_footer(new_footer(MiB, DiskType.FIXED, 2**64 - 1))
    with pytest.raises(CorruptImage):  # a fixed disk has no copy to fall back on
        choose_footer(fixed, fixed[:100] + b"\xff" + fixed[101:], 5000)
    assert choose_footer(bytes(512), b"\0" + fixed[:511], 5000).offset == 5000 - 511
    grown = pack_footer(f.replace(current_size=2 * MiB))
    assert choose_footer(good, grown, 5000).stale_copy
    assert not choose_footer(good, good, 5000).stale_copy
    # a legacy 511-byte footer and its copy are the same disk: nothing to refresh
    assert not choose_footer(good[:511] + b"\0", b"\xff" + good[:511], 5000).stale_copy
    # nor when only reserved bytes (and so the checksums) differ
    reserved = bytearray(good)
    reserved[300] = 1
    reserved[64:68] = bytes(4)
    reserved[64:68] = (~sum(reserved) & 0xFFFFFFFF).to_bytes(4, "big")
    assert not choose_footer(bytes(reserved), good, 5000).stale_copy
