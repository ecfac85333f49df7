"""The VHD hard disk footer: parse, validate, pack (pure)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from pyhv.errors import CorruptImage, InvalidFormat, UnsupportedFeature
from pyhv.storage.vhd.checksum import vhd_checksum
from pyhv.storage.vhd.geometry import Geometry
from pyhv.storage.vhd.structs import (
    CURRENT_SIZE_CREATORS,
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_DYNAMIC,
    DISK_TYPE_FIXED,
    FOOTER,
    FOOTER_CHECKSUM_OFFSET,
    FOOTER_COOKIE,
    FOOTER_SIZE,
    MAX_SIZE,
)

DISK_TYPES = (DISK_TYPE_FIXED, DISK_TYPE_DYNAMIC, DISK_TYPE_DIFFERENCING)


@dataclass(frozen=True)
class Footer:
    features: int
    version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_os: bytes
    original_size: int
    current_size: int
    geometry: Geometry
    disk_type: int
    checksum: int
    unique_id: bytes
    saved_state: int

    @property
    def virtual_size(self) -> int:
        """The size readers agree on: qemu's rule (vpc_open), which Hyper-V's creators satisfy.

        Creators Microsoft and qemu trust, or a maximal geometry, mean current_size; older
        Virtual PC-style creators mean the CHS capacity.
        """
        if self.creator_app in CURRENT_SIZE_CREATORS or self.geometry.is_max:
            return self.current_size
        return min(self.geometry.capacity, self.current_size) or self.current_size

    @property
    def uuid(self) -> str:
        return str(uuid.UUID(bytes=self.unique_id))

    def replace(self, **changes: object) -> Footer:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def is_resize_lag(copy: Footer, footer: Footer) -> bool:
    """The copy differs only in what a resize changes: a resize was interrupted between its two
    footer writes. The footer at the end of file is authoritative; the copy is refreshed."""
    same = dict(checksum=0, current_size=0, geometry=footer.geometry)
    same |= dict(creator_app=b"", creator_version=0, creator_os=b"")
    return copy.replace(**same) == footer.replace(**same)


def same_fields(copy: Footer, footer: Footer) -> bool:
    """Equal in every field a reader uses: copies that differ only in reserved bytes (and so in
    their checksums) describe the same disk, and there is nothing to refresh or report."""
    return copy.replace(checksum=0) == footer.replace(checksum=0)


def footer_problems(buf: bytes) -> list[str]:
    """Why ``buf`` is not a valid footer (empty when it is)."""
    if len(buf) < FOOTER_SIZE - 1 or not buf.startswith(FOOTER_COOKIE):
        return ["no 'conectix' cookie"]
    buf = buf.ljust(FOOTER_SIZE, b"\0")
    stored = int.from_bytes(buf[FOOTER_CHECKSUM_OFFSET : FOOTER_CHECKSUM_OFFSET + 4], "big")
    computed = vhd_checksum(buf, FOOTER_CHECKSUM_OFFSET)
    if stored != computed:
        return [f"checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"]
    return []


def parse_footer(buf: bytes) -> Footer:
    """Decode and validate a footer (512 bytes, or 511 for legacy images).

    :raises InvalidFormat: no cookie. :raises CorruptImage: checksum or field values wrong.
    :raises UnsupportedFeature: valid but unsupported (size beyond the VHD limit).
    """
    problems = footer_problems(buf)
    if problems:
        cls = InvalidFormat if "cookie" in problems[0] else CorruptImage
        raise cls(f"VHD footer: {problems[0]}")
    buf = buf.ljust(FOOTER_SIZE, b"\0")
    (_cookie, features, version, data_offset, ts, app, cver, cos, orig, cur, cyl, heads, spt,
     dtype, csum, uid, saved) = FOOTER.unpack_from(buf)  # fmt: skip
    if version >> 16 != 1:
        raise UnsupportedFeature(f"VHD footer: file format version {version:#010x} is not 1.x")
    if dtype not in DISK_TYPES:
        raise UnsupportedFeature(f"VHD footer: disk type {dtype} is not fixed/dynamic/differencing")
    if cur > MAX_SIZE or cur % 512:
        raise CorruptImage(f"VHD footer: current size {cur} is not a valid VHD size (max 2040 GiB)")
    return Footer(
        features, version, data_offset, ts, app, cver, cos, orig, cur,
        Geometry(cyl, heads, spt), dtype, csum, uid, saved,
    )  # fmt: skip


@dataclass(frozen=True)
class FooterChoice:
    """Which footer describes the disk, read from the file's first and last 512 bytes."""

    footer: Footer
    offset: int  # of the footer at the end of file (EOF-511 for legacy images)
    problems: tuple[str, ...] = ()  # the end-of-file footer was bad: the copy was used
    stale_copy: bool = False  # the copy at offset 0 lags an interrupted resize


def choose_footer(head: bytes, tail: bytes, file_size: int) -> FooterChoice:
    """The end-of-file footer, else (dynamic and differencing disks) the copy at offset 0.

    :raises InvalidFormat: no footer at all. :raises CorruptImage: both are damaged.
    """
    if file_size < FOOTER_SIZE:
        raise InvalidFormat(f"not a VHD: file too short ({file_size} bytes)")
    offset = file_size - FOOTER_SIZE
    if not tail.startswith(FOOTER_COOKIE) and tail[1:].startswith(FOOTER_COOKIE):
        offset, tail = offset + 1, tail[1:]
    problems = footer_problems(tail)
    copy = _valid_or_none(head)
    if not problems:
        footer = parse_footer(tail)
        stale = (
            footer.disk_type != DISK_TYPE_FIXED  # a fixed disk's offset 0 is guest data
            and copy is not None
            and not same_fields(copy, footer)
            and is_resize_lag(copy, footer)
        )
        return FooterChoice(footer, offset, stale_copy=stale)
    if copy is not None and copy.disk_type != DISK_TYPE_FIXED:
        return FooterChoice(copy, offset, (f"footer at end of file: {problems[0]}",))
    if not head.startswith(FOOTER_COOKIE) and "cookie" in problems[0]:
        raise InvalidFormat("not a VHD file (no footer)")
    raise CorruptImage(f"VHD footer {problems[0]} and no valid copy at offset 0")


def _valid_or_none(buf: bytes) -> Footer | None:
    if footer_problems(buf):
        return None
    try:
        return parse_footer(buf)
    except (InvalidFormat, CorruptImage, UnsupportedFeature):
        return None


def pack_footer(f: Footer) -> bytes:
    """512 bytes with a fresh checksum (``f.checksum`` is ignored)."""
    g = f.geometry
    body = FOOTER.pack(
        FOOTER_COOKIE, f.features, f.version, f.data_offset, f.timestamp, f.creator_app,
        f.creator_version, f.creator_os, f.original_size, f.current_size, g.cylinders, g.heads,
        g.sectors_per_track, f.disk_type, 0, f.unique_id, f.saved_state,
    )  # fmt: skip
    buf = bytearray(body.ljust(FOOTER_SIZE, b"\0"))
    buf[FOOTER_CHECKSUM_OFFSET : FOOTER_CHECKSUM_OFFSET + 4] = vhd_checksum(
        bytes(buf), FOOTER_CHECKSUM_OFFSET
    ).to_bytes(4, "big")
    return bytes(buf)
