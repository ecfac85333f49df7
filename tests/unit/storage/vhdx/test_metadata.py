import uuid

import pytest

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.metadata import (
    DiskParams,
    format_linkage,
    pack_metadata_region,
    pack_parent_locator,
    parse_disk_params,
    parse_linkage,
    parse_metadata_table,
    parse_parent_locator,
    replace_item,
)
from pyhv.units import GiB, MiB

REGION = 1 * MiB


def params(**kw: object) -> DiskParams:
    base: dict[str, object] = dict(
        block_size=32 * MiB,
        virtual_size=10 * GiB,
        logical_sector_size=512,
        physical_sector_size=4096,
        page83_id=uuid.uuid4(),
    )
    base.update(kw)
    return DiskParams(**base)  # type: ignore[arg-type]


def parse(region: bytes) -> DiskParams:
    return parse_disk_params(region, parse_metadata_table(region, REGION))


def test_roundtrip_dynamic_and_differencing() -> None:
    p = params()
    assert parse(pack_metadata_region(p, REGION)) == p
    d = params(has_parent=True, parent_locator={"parent_linkage": "{x}", "relative_path": "a"})
    assert parse(pack_metadata_region(d, REGION)) == d


def test_items_start_at_64k_and_flags() -> None:
    region = pack_metadata_region(params(), REGION)
    items = parse_metadata_table(region, REGION)
    assert min(it.offset for it in items) == 64 * 1024
    assert all(it.required for it in items)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"block_size": 3 * MiB}, "block size"),
        ({"block_size": 512 * MiB}, "block size"),
        ({"logical_sector_size": 1024}, "logical sector size"),
        ({"virtual_size": 1000}, "virtual disk size"),
    ],
)
def test_invalid_values(change: dict[str, int], message: str) -> None:
    with pytest.raises(CorruptImage, match=message):
        parse(pack_metadata_region(params(**change), REGION))


def test_unknown_required_item_and_bounds() -> None:
    region = bytearray(pack_metadata_region(params(), REGION))
    entry = s.METADATA_HEADER_STRUCT.size
    region[entry : entry + 16] = uuid.uuid4().bytes_le
    with pytest.raises(UnsupportedFeature, match="unknown required metadata item"):
        parse_metadata_table(bytes(region), REGION)
    region = bytearray(pack_metadata_region(params(), REGION))
    region[entry + 16 : entry + 20] = (REGION - 4).to_bytes(4, "little")
    with pytest.raises(CorruptImage, match="outside the metadata region"):
        parse_metadata_table(bytes(region), REGION)


def test_missing_item() -> None:
    region = bytearray(pack_metadata_region(params(), REGION))
    region[10:12] = (4).to_bytes(2, "little")  # drop the physical sector size entry
    with pytest.raises(CorruptImage, match="missing"):
        parse(bytes(region))


def test_parent_locator_roundtrip_and_errors() -> None:
    entries = {"parent_linkage": format_linkage(uuid.uuid4()), "relative_path": r"..\a\b.vhdx"}
    assert parse_parent_locator(pack_parent_locator(entries)) == entries
    with pytest.raises(CorruptImage, match="parent_linkage"):
        parse_parent_locator(pack_parent_locator({"relative_path": "x"}))
    bad = bytearray(pack_parent_locator(entries))
    bad[0] ^= 1
    with pytest.raises(UnsupportedFeature, match="locator type"):
        parse_parent_locator(bytes(bad))
    short = pack_parent_locator(entries)[:30]
    with pytest.raises(CorruptImage):
        parse_parent_locator(short)


def test_linkage_text() -> None:
    g = uuid.uuid4()
    assert format_linkage(g) == "{" + str(g) + "}"
    assert parse_linkage("{" + str(g).upper() + "}") == g
    assert parse_linkage("nonsense") is None


def test_replace_item_in_place_and_moved() -> None:
    p = params(has_parent=True, parent_locator={"parent_linkage": "{a}", "relative_path": "b"})
    region = pack_metadata_region(p, REGION)
    items = parse_metadata_table(region, REGION)
    grown = replace_item(region, items, s.VIRTUAL_DISK_SIZE_GUID, (20 * GiB).to_bytes(8, "little"))
    assert parse(grown).virtual_size == 20 * GiB
    longer = {"parent_linkage": "{a}", "relative_path": "b" * 300}
    moved = replace_item(region, items, s.PARENT_LOCATOR_GUID, pack_parent_locator(longer))
    assert parse(moved).parent_locator == longer
