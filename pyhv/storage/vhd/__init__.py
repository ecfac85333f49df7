"""VHD (Virtual Hard Disk v1.0): fixed, dynamic and differencing images.

Ref: Microsoft "Virtual Hard Disk Image Format Specification" v1.0 (2006);
shared/reference/vhd-vhdx.md §1 and §3 for what real tools write.
"""

from __future__ import annotations

from pathlib import Path

from pyhv.storage.image import CreateSpec, DiskImage, ImageFormat
from pyhv.storage.vhd.check import check_vhd
from pyhv.storage.vhd.create import create_vhd
from pyhv.storage.vhd.image import VhdImage


class VhdFormat:
    format = ImageFormat.VHD

    def open_layer(self, path: Path, writable: bool) -> DiskImage:
        return VhdImage(path, writable)

    def create(self, path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
        create_vhd(path, spec, parent)

    def check(self, path: Path, repair: bool) -> list[str]:
        return check_vhd(path, repair)


FORMAT = VhdFormat()

__all__ = ["FORMAT", "VhdFormat", "VhdImage"]
