"""Differencing VHDX chains written by pyhv, read by independent readers (libvhdi, dissect)."""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

import pytest

from pyhv.storage.image import CreateSpec, DiskImage, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.units import MiB

pyvhdi = pytest.importorskip("pyvhdi")
dissect_vhdx = pytest.importorskip("dissect.hypervisor.disk.vhdx")

pytestmark = pytest.mark.integration
SIZE = 24 * MiB


def chain_of(paths: list[Path], writable_top: bool) -> VhdxImage:
    images = [VhdxImage(p, writable=False) for p in paths[:-1]]
    top = VhdxImage(paths[-1], writable=writable_top)
    for parent, child in zip([*images, top], [*images, top][1:], strict=False):
        child.attach_parent(parent)
    return top


def build_chain(tmp_path: Path, align: int, logical: int = 512) -> tuple[list[Path], bytes]:
    """Base + 3 differencing levels, each written through pyhv; returns paths and content."""
    rnd = random.Random(align * logical)
    model = bytearray(SIZE)
    base = tmp_path / "base.vhdx"
    spec = CreateSpec(size=SIZE, block_size=2 * MiB, logical_sector_size=logical)
    FORMAT.create(base, spec, None)
    paths = [base]

    def scribble(img: DiskImage, n: int) -> None:
        for _ in range(n):
            length = rnd.randrange(1, 400) * align
            off = rnd.randrange(0, (SIZE - length) // align) * align
            data = rnd.randbytes(length)
            img.write(off, data)
            model[off : off + length] = data

    with VhdxImage(base, writable=True) as img:
        scribble(img, 10)
    for level in range(3):
        child = tmp_path / f"level{level}.avhdx"
        with VhdxImage(paths[-1], writable=False) as parent:
            FORMAT.create(
                child,
                CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(paths[-1])),
                parent,
            )
        paths.append(child)
        with chain_of(paths, writable_top=True) as top:
            scribble(top, 20)
    return paths, bytes(model)


def read_pyvhdi(paths: list[Path]) -> bytes:
    files = []
    for p in paths:
        f = pyvhdi.file()
        f.open(str(p))
        files.append(f)
    for parent, child in itertools.pairwise(files):
        child.set_parent(parent)
    top = files[-1]
    assert top.get_media_size() == SIZE
    top.seek_offset(0)
    return bytes(top.read_buffer(SIZE))


def read_dissect(path: Path) -> bytes:
    disk = dissect_vhdx.VHDX(path)
    out = bytearray()
    step = 2 * MiB  # dissect reads correctly per whole block
    for off in range(0, SIZE, step):
        disk.seek(off)
        out += disk.read(step)
    return bytes(out)


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_three_level_chain_sector_granular(tmp_path: Path) -> None:
    paths, model = build_chain(tmp_path, align=512)
    before = digests(paths[:-1])
    with chain_of(paths, writable_top=False) as top:
        assert top.read(0, SIZE) == model
    assert read_pyvhdi(paths) == model
    assert digests(paths[:-1]) == before  # reading never touches the parents


def test_three_level_chain_all_readers_agree(tmp_path: Path) -> None:
    # dissect.hypervisor (3.x) mis-splits sector-bitmap bytes that mix present and absent
    # sectors, so this chain is written in 4 KiB units that it can follow.
    paths, model = build_chain(tmp_path, align=4096)
    with chain_of(paths, writable_top=False) as top:
        assert top.read(0, SIZE) == model
    assert read_pyvhdi(paths) == model
    assert read_dissect(paths[-1]) == model


def test_4096_byte_sectors_chain(tmp_path: Path) -> None:
    paths, model = build_chain(tmp_path, align=4096, logical=4096)
    with chain_of(paths, writable_top=False) as top:
        assert top.logical_sector_size == 4096
        assert top.read(0, SIZE) == model
    assert read_pyvhdi(paths) == model
