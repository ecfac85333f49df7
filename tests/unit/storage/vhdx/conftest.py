"""Helpers for VHDX tests: small images made through the format driver."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.storage.image import CreateSpec, DiskType
from pyhv.storage.vhdx import FORMAT, VhdxImage
from pyhv.units import MiB

MakeImage = Callable[..., Path]


@pytest.fixture
def make_image(tmp_path: Path) -> MakeImage:
    counter = iter(range(1000))

    def make(
        size: int = 8 * MiB,
        disk_type: DiskType = DiskType.DYNAMIC,
        block_size: int | None = 1 * MiB,
        logical: int = 512,
        parent: Path | None = None,
        name: str | None = None,
    ) -> Path:
        path = tmp_path / (name or f"disk{next(counter)}.vhdx")
        if parent is not None:
            with VhdxImage(parent, writable=False) as p:
                spec = CreateSpec(
                    size=0,
                    disk_type=DiskType.DIFFERENCING,
                    block_size=block_size,
                    parent=str(parent),
                )
                FORMAT.create(path, spec, p)
        else:
            spec = CreateSpec(
                size=size, disk_type=disk_type, block_size=block_size, logical_sector_size=logical
            )
            FORMAT.create(path, spec, None)
        return path

    return make


def _open_chain(paths: list[Path], writable_top: bool = True) -> VhdxImage:
    """Open ``paths`` (base first) as a chain; the top one writable."""
    images = [VhdxImage(p, writable=False) for p in paths[:-1]]
    top = VhdxImage(paths[-1], writable=writable_top)
    chain = [*images, top]
    for parent, child in itertools.pairwise(chain):
        child.attach_parent(parent)
    return top


@pytest.fixture
def open_chain() -> Callable[..., VhdxImage]:
    return _open_chain
