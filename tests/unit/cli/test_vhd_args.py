"""The pure parts of `pyhv vhd`: argument validation and the info document."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.cli.vhd import choose_type, info_document, info_table, new_spec
from pyhv.errors import UsageError
from pyhv.storage import DiskType, ImageFormat, ImageInfo

G = 1 << 30


def test_choose_type() -> None:
    assert choose_type(True, False) == DiskType.FIXED
    assert choose_type(False, True) == DiskType.DYNAMIC
    assert choose_type(False, False) is None
    with pytest.raises(UsageError, match="not both"):
        choose_type(True, True)


def test_new_spec_plain_disk() -> None:
    spec = new_spec("10G", DiskType.FIXED, None, "32M", 4096, 4096)
    assert (spec.size, spec.disk_type, spec.block_size) == (10 * G, DiskType.FIXED, 32 << 20)
    assert (spec.logical_sector_size, spec.physical_sector_size, spec.parent) == (4096, 4096, None)
    default = new_spec("1T", None, None, None, None, None)
    assert (default.size, default.disk_type, default.logical_sector_size) == (
        1 << 40,
        DiskType.DYNAMIC,
        512,
    )
    assert default.block_size is None and default.physical_sector_size is None


def test_new_spec_differencing_takes_the_parents_size() -> None:
    spec = new_spec(None, None, Path("base.vhdx"), None, None, None)
    assert (spec.disk_type, spec.parent) == (DiskType.DIFFERENCING, "base.vhdx")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, None, None, None, None, None), "--size is required"),
        (("0", None, None, None, None, None), "larger than 0"),
        (("1000", None, None, None, None, None), "multiple of the 512-byte sector"),
        (("1M", None, None, None, 4096, None), None),
        (("1026K", None, None, None, 4096, None), "4096-byte sector"),
        (("1G", None, None, None, 1024, None), "512 or 4096"),
        (("1G", None, None, None, None, 2048), "512 or 4096"),
        (("1G", None, None, None, 4096, 512), "smaller than"),
        (("1G", None, None, "0", None, None), "block size"),
        (("1G", None, Path("p.vhd"), None, None, None), "drop --size"),
        ((None, DiskType.FIXED, Path("p.vhd"), None, None, None), "drop --fixed"),
        (("lots", None, None, None, None, None), "invalid size"),
    ],
)
def test_new_spec_refusals(args: tuple, message: str | None) -> None:  # type: ignore[type-arg]
    if message is None:
        new_spec(*args)
        return
    with pytest.raises(UsageError, match=message) as err:
        new_spec(*args)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def _info(path: str, parent: str | None) -> ImageInfo:
    return ImageInfo(
        path=path,
        format=ImageFormat.VHDX,
        disk_type=DiskType.DIFFERENCING if parent else DiskType.DYNAMIC,
        size=G,
        file_size=4 << 20,
        minimum_size=G,
        block_size=32 << 20,
        logical_sector_size=512,
        physical_sector_size=4096,
        identifier="6a1f1a7e-0000-4000-8000-000000000001",
        parent_path=parent,
        allocated_bytes=1 << 20,
    )


def test_info_document_has_get_vhd_fields_and_the_chain() -> None:
    doc = info_document([_info("top.avhdx", "base.vhdx"), _info("base.vhdx", None)])
    assert doc["format"] == "vhdx" and doc["type"] == "differencing"
    assert doc["virtual_size"] == G and "size" not in doc and "disk_type" not in doc
    assert doc["parent_path"] == "base.vhdx"
    assert [c["path"] for c in doc["chain"]] == ["top.avhdx", "base.vhdx"]
    assert doc["chain"][1]["type"] == "dynamic"
    assert "chain_error" not in doc
    for key in (
        "file_size",
        "minimum_size",
        "block_size",
        "logical_sector_size",
        "physical_sector_size",
        "identifier",
        "allocated_bytes",
    ):
        assert key in doc
    assert info_table(doc).row_count == 13


def test_info_document_records_a_broken_chain() -> None:
    doc = info_document([_info("top.avhdx", "gone.vhdx")], "parent not found: gone.vhdx")
    assert doc["chain_error"] == "parent not found: gone.vhdx"
    assert len(doc["chain"]) == 1
