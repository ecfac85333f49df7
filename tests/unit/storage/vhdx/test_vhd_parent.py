"""A VHDX child of a VHD parent (the storage API resolves the chain across formats)."""

from __future__ import annotations

import uuid
from pathlib import Path

from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.vhdx import VhdxImage
from pyhv.units import MiB


def test_vhdx_child_of_vhd_parent(tmp_path: Path) -> None:
    base, child = tmp_path / "base.vhd", tmp_path / "child.avhdx"
    create_image(base, CreateSpec(size=8 * MiB))
    with open_image(base, writable=True) as b:
        b.write(0, b"base" * 4096)
        identity = b.identity
    create_image(child, CreateSpec(size=0, disk_type=DiskType.DIFFERENCING, parent=str(base)))
    with VhdxImage(child, writable=False) as c:
        # parent_linkage holds the VHD UniqueId read as a GUID, like a VHDX DataWriteGuid.
        assert (
            c.params.parent_locator["parent_linkage"]
            == "{" + str(uuid.UUID(bytes_le=identity)) + "}"
        )
        assert c.parent_identity == identity
    with open_image(child, writable=True) as c:
        c.write(4096 + 100, b"child")
        assert c.read(0, 8) == b"basebase"
    with open_image(child) as c:
        assert c.read(4096 + 100, 5) == b"child"
        assert c.read(4096, 4) == b"base"
    with open_image(base) as b:
        assert b.identity == identity
