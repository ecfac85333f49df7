"""Hostile input for the operations: valid images with mutated metadata, checksums fixed up
so the damage gets past the first line of defence.

Whatever the damage, ``check_chain`` returns its list of lines, and ``convert_image`` either
copies exactly what the damaged image reads or raises pyhv's own error leaving no file behind;
anything else (another exception type, a hang, a half file) is a bug.
"""

from __future__ import annotations

import os
import random
import struct
import uuid

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhv.errors import PyhvError
from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.storage.operations import check_chain, convert_image

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MiB = 1 << 20
KiB = 1 << 10
BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")


def vhd_structures(image: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the footer copy, dynamic header, BAT and footer of a dynamic VHD."""
    (header_at,) = struct.unpack_from(">Q", image, 16)
    (bat_at,) = struct.unpack_from(">Q", image, header_at + 16)
    (entries,) = struct.unpack_from(">I", image, header_at + 28)
    return [(0, 512), (header_at, 1024), (bat_at, 4 * entries), (len(image) - 512, 512)]


def vhdx_structures(image: bytes) -> list[tuple[int, int]]:
    """Both headers and region tables, the BAT, the metadata table and its first items."""
    (count,) = struct.unpack_from("<I", image, 192 * KiB + 8)
    regions = {}
    for i in range(count):
        guid, offset, length = struct.unpack_from("<16sQI", image, 192 * KiB + 16 + 32 * i)
        regions[uuid.UUID(bytes_le=guid)] = (offset, length)
    bat_at, bat_len = regions[BAT_REGION]
    meta_at, _ = regions[METADATA_REGION]
    return [
        (64 * KiB, 256),
        (128 * KiB, 256),
        (192 * KiB, 128),
        (256 * KiB, 128),
        (bat_at, min(bat_len, 512)),
        (meta_at, 256),
        (meta_at + 64 * KiB, 512),
    ]


def vhd_fix_checksums(image: bytearray) -> None:
    def fix(at: int, length: int, field: int) -> None:
        part = image[at : at + length]
        part[field : field + 4] = bytes(4)
        image[at + field : at + field + 4] = struct.pack(">I", ~sum(part) & 0xFFFFFFFF)

    fix(0, 512, 64)
    fix(len(image) - 512, 512, 64)
    (header_at,) = struct.unpack_from(">Q", image, len(image) - 512 + 16)
    if header_at + 1024 <= len(image):
        fix(header_at, 1024, 36)


def vhdx_fix_checksums(image: bytearray) -> None:
    for at, length in (
        (64 * KiB, 4 * KiB),
        (128 * KiB, 4 * KiB),
        (192 * KiB, 64 * KiB),
        (256 * KiB, 64 * KiB),
    ):
        part = bytearray(image[at : at + length])
        part[4:8] = bytes(4)
        image[at + 4 : at + 8] = struct.pack("<I", crc32c.crc32c(bytes(part)))


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("templates")
    rng = random.Random(7)
    out = {}
    for ext in ("vhd", "vhdx"):
        path = folder / f"t.{ext}"
        create_image(path, CreateSpec(size=8 * MiB, block_size=MiB))
        with open_image(path, writable=True) as img:
            for block in (0, 3, 7):
                img.write(block * MiB + 4096, rng.randbytes(200 * KiB))
            img.flush()
        out[ext] = path.read_bytes()
    return out


mutation = st.tuples(st.integers(0, 10), st.integers(0, 1 << 20), st.integers(0, 255))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ext=st.sampled_from(["vhd", "vhdx"]),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    fix=st.booleans(),
)
def test_damaged_metadata_is_reported_or_read_consistently(
    tmp_path_factory: pytest.TempPathFactory,
    templates: dict[str, bytes],
    ext: str,
    mutations: list[tuple[int, int, int]],
    fix: bool,
) -> None:
    folder = tmp_path_factory.mktemp("case")
    image = bytearray(templates[ext])
    structures = vhd_structures(image) if ext == "vhd" else vhdx_structures(image)
    for which, where, value in mutations:
        at, length = structures[which % len(structures)]
        image[at + where % length] = value
    if fix:
        (vhd_fix_checksums if ext == "vhd" else vhdx_fix_checksums)(image)
    path = folder / f"d.{ext}"
    path.write_bytes(image)

    assert isinstance(check_chain(path), list)
    out = folder / "out.img"
    try:
        convert_image(path, out)
    except PyhvError:
        assert sorted(p.name for p in folder.iterdir()) == [path.name]
        return
    with open_image(path) as src, open_image(out) as dst:
        assert src.size == dst.size
        assert src.read(0, src.size) == dst.read(0, dst.size)
    os.unlink(out)
