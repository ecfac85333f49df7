"""The VHD one's-complement checksum shared by footer and dynamic header (VHD-SPEC)."""

from __future__ import annotations


def vhd_checksum(buf: bytes, field_offset: int) -> int:
    """``~sum(bytes)`` with the 4 checksum bytes taken as zero."""
    total = sum(buf) - sum(buf[field_offset : field_offset + 4])
    return ~total & 0xFFFFFFFF
