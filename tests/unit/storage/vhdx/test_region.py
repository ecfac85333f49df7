import uuid

import pytest

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.region import (
    Region,
    RegionTable,
    check_log_placement,
    pack_region_table,
    parse_region_table,
)
from pyhv.units import MiB


def table(*others: Region, bat_at: int = 3 * MiB) -> RegionTable:
    return RegionTable(
        Region(s.BAT_REGION_GUID, bat_at, 1 * MiB, True),
        Region(s.METADATA_REGION_GUID, 2 * MiB, 1 * MiB, True),
        others,
    )


def test_roundtrip() -> None:
    t = table(Region(uuid.uuid4(), 10 * MiB, 1 * MiB, False))
    packed = pack_region_table(t)
    assert len(packed) == s.REGION_TABLE_SIZE
    assert parse_region_table(packed, 0x30000) == t


def test_checksum_mismatch_names_offset() -> None:
    packed = bytearray(pack_region_table(table()))
    packed[100] ^= 0xFF
    with pytest.raises(CorruptImage, match="region table checksum mismatch at 0x30000"):
        parse_region_table(bytes(packed), 0x30000)


def test_unknown_required_region() -> None:
    with pytest.raises(UnsupportedFeature, match="unknown required region"):
        parse_region_table(pack_region_table(table(Region(uuid.uuid4(), 9 * MiB, MiB, True))), 0)


def test_overlap_and_alignment() -> None:
    with pytest.raises(CorruptImage, match="overlap"):
        parse_region_table(pack_region_table(table(bat_at=2 * MiB)), 0)
    with pytest.raises(CorruptImage, match="aligned"):
        parse_region_table(pack_region_table(table(bat_at=3 * MiB + 4096)), 0)
    with pytest.raises(CorruptImage, match="aligned"):
        parse_region_table(pack_region_table(table(bat_at=0)), 0)


def test_missing_bat() -> None:
    t = table()
    only_md = RegionTable(t.metadata, Region(uuid.uuid4(), 5 * MiB, MiB, False))
    with pytest.raises(CorruptImage, match="lacks region"):
        parse_region_table(pack_region_table(only_md), 0)


def test_log_overlapping_a_region() -> None:
    with pytest.raises(CorruptImage, match="overlaps region"):
        check_log_placement(table(), 2 * MiB, 1 * MiB)
    check_log_placement(table(), 1 * MiB, 1 * MiB)
