"""CHS geometry of a VHD (VHD-SPEC appendix "CHS calculation"; rounds down)."""

from __future__ import annotations

from dataclasses import dataclass

from pyhv.storage.vhd.structs import SECTOR_SIZE

MAX_CHS_SECTORS = 65535 * 16 * 255


@dataclass(frozen=True)
class Geometry:
    cylinders: int
    heads: int
    sectors_per_track: int

    @property
    def capacity(self) -> int:
        """Bytes the geometry addresses (what Virtual PC and qemu show for untrusted creators)."""
        return self.cylinders * self.heads * self.sectors_per_track * SECTOR_SIZE

    @property
    def is_max(self) -> bool:
        return (self.cylinders, self.heads, self.sectors_per_track) == (65535, 16, 255)


def chs_for_size(size_bytes: int) -> Geometry:
    """The spec's geometry for a disk of ``size_bytes``; its capacity is ≤ the size."""
    ts = min(size_bytes // SECTOR_SIZE, MAX_CHS_SECTORS)
    if ts >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = ts // spt
    else:
        spt = 17
        cth = ts // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = ts // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = ts // spt
    return Geometry(cth // heads, heads, spt)
