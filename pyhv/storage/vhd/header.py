"""The VHD dynamic disk header and its parent locators: parse, validate, pack (pure)."""

from __future__ import annotations

import dataclasses
import ntpath
import os
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhd.checksum import vhd_checksum
from pyhv.storage.vhd.structs import (
    HEADER,
    HEADER_CHECKSUM_OFFSET,
    HEADER_COOKIE,
    HEADER_SIZE,
    LOCATOR,
    LOCATOR_COUNT,
    LOCATOR_OFFSET,
    LOCATOR_SPACE,
    MAX_READ_BLOCK_SIZE,
    NO_DATA_OFFSET,
    PLATFORM_MACX,
    PLATFORM_W2KU,
    PLATFORM_W2RU,
    PLATFORM_WI2K,
    PLATFORM_WI2R,
    SECTOR_SIZE,
)


@dataclass(frozen=True)
class Locator:
    code: bytes
    data_space: int  # as stored: bytes (Windows) or sectors (spec); see ``space_bytes``
    data_length: int
    data_offset: int

    @property
    def space_bytes(self) -> int:
        """Reserved bytes; values below 512 are sector counts (spec), others bytes (Windows)."""
        return self.data_space * SECTOR_SIZE if self.data_space < SECTOR_SIZE else self.data_space


@dataclass(frozen=True)
class DynamicHeader:
    table_offset: int
    max_table_entries: int
    block_size: int
    checksum: int
    parent_unique_id: bytes
    parent_timestamp: int
    parent_name: str
    locators: tuple[Locator, ...]
    version: int = 0x00010000
    data_offset: int = NO_DATA_OFFSET

    def replace(self, **changes: object) -> DynamicHeader:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def header_problems(buf: bytes) -> list[str]:
    if len(buf) < HEADER_SIZE or not buf.startswith(HEADER_COOKIE):
        return ["no 'cxsparse' cookie"]
    stored = int.from_bytes(buf[HEADER_CHECKSUM_OFFSET : HEADER_CHECKSUM_OFFSET + 4], "big")
    computed = vhd_checksum(buf[:HEADER_SIZE], HEADER_CHECKSUM_OFFSET)
    if stored != computed:
        return [f"checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"]
    return []


def parse_header(buf: bytes) -> DynamicHeader:
    """Decode and validate a 1024-byte dynamic header.

    :raises CorruptImage: cookie, checksum or block size wrong.
    """
    problems = header_problems(buf)
    if problems:
        raise CorruptImage(f"VHD dynamic header: {problems[0]}")
    (_cookie, data_off, table_off, version, entries, block_size, csum, puid, pts, _res,
     name) = HEADER.unpack_from(buf)  # fmt: skip
    if version >> 16 != 1:
        raise UnsupportedFeature(f"VHD dynamic header: version {version:#010x} is not 1.x")
    if (
        block_size < SECTOR_SIZE
        or block_size > MAX_READ_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise CorruptImage(f"VHD dynamic header: block size {block_size} is not a power of two")
    locators = tuple(
        Locator(*_pick_locator(LOCATOR.unpack_from(buf, LOCATOR_OFFSET + i * LOCATOR.size)))
        for i in range(LOCATOR_COUNT)
    )
    parent_name = name.decode("utf-16-be", "replace").split("\0", 1)[0]
    return DynamicHeader(
        table_off, entries, block_size, csum, puid, pts, parent_name, locators, version, data_off
    )


def _pick_locator(fields: tuple[bytes, int, int, int, int]) -> tuple[bytes, int, int, int]:
    code, space, length, _reserved, offset = fields
    return code, space, length, offset


def pack_header(h: DynamicHeader) -> bytes:
    """1024 bytes with a fresh checksum (``h.checksum`` is ignored)."""
    name = h.parent_name.encode("utf-16-be")[:512]
    buf = bytearray(HEADER_SIZE)
    HEADER.pack_into(
        buf, 0, HEADER_COOKIE, h.data_offset, h.table_offset, h.version, h.max_table_entries,
        h.block_size, 0, h.parent_unique_id, h.parent_timestamp, 0, name,
    )  # fmt: skip
    for i, loc in enumerate(h.locators[:LOCATOR_COUNT]):
        LOCATOR.pack_into(
            buf, LOCATOR_OFFSET + i * LOCATOR.size,
            loc.code, loc.data_space, loc.data_length, 0, loc.data_offset,
        )  # fmt: skip
    buf[HEADER_CHECKSUM_OFFSET : HEADER_CHECKSUM_OFFSET + 4] = vhd_checksum(
        bytes(buf), HEADER_CHECKSUM_OFFSET
    ).to_bytes(4, "big")
    return bytes(buf)


def decode_locator(code: bytes, data: bytes) -> str | None:
    """The path a locator's data names, in its platform's encoding; None for unknown kinds."""
    if code in (PLATFORM_W2RU, PLATFORM_W2KU):
        text = data.decode("utf-16-le", "replace")
    elif code in (PLATFORM_WI2R, PLATFORM_WI2K):
        text = data.decode("latin-1")
    elif code == PLATFORM_MACX:
        text = urllib.parse.unquote(data.decode("utf-8", "replace").removeprefix("file://"))
    else:
        return None
    text = text.split("\0", 1)[0]
    return text or None


def resolve_locator_path(child_dir: Path, code: bytes, text: str) -> Path | None:
    """Where on this host a locator's path points; None for Windows drive paths we cannot map."""
    if code in (PLATFORM_W2RU, PLATFORM_WI2R):
        parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
        return Path(os.path.normpath(child_dir.joinpath(*parts))) if parts else None
    if ntpath.splitdrive(text)[0] or text.startswith("\\\\"):
        return None  # "C:\dir\parent.vhd" or a UNC path: not on this host
    posix = text.replace("\\", "/")
    if posixpath.isabs(posix):
        return Path(posix)
    return Path(os.path.normpath(child_dir / PurePosixPath(posix)))


def parent_candidates(
    child_dir: Path, parent_name: str, locator_paths: list[tuple[bytes, str]]
) -> list[Path]:
    """Where to look for the parent, best first: W2ru, W2ku, MacX, Wi2r, Wi2k, then the
    unicode name's file name beside the child (Windows stores a full path there)."""
    order = [PLATFORM_W2RU, PLATFORM_W2KU, PLATFORM_MACX, PLATFORM_WI2R, PLATFORM_WI2K]
    ranked = sorted(locator_paths, key=lambda cp: order.index(cp[0]) if cp[0] in order else 9)
    out: list[Path] = []
    for code, text in ranked:
        p = resolve_locator_path(child_dir, code, text)
        if p is not None and p not in out:
            out.append(p)
    if parent_name:
        base = ntpath.basename(parent_name.replace("/", "\\"))
        if base and child_dir / base not in out:
            out.append(child_dir / base)
    return out


def relative_locator(child_dir: Path, parent_path: Path) -> str:
    """W2ru text: the parent relative to the child's folder, Windows style (``.\\p.vhd``)."""
    rel = os.path.relpath(os.path.abspath(parent_path), os.path.abspath(child_dir))
    rel = rel.replace("/", "\\")
    return rel if rel.startswith("..") else ".\\" + rel


def absolute_locator(parent_path: Path) -> str:
    """W2ku text: the absolute path with Windows separators (read back as a host path)."""
    return os.path.abspath(parent_path).replace("/", "\\")


def locator_payloads(child_path: Path, parent_path: Path) -> list[tuple[bytes, bytes]]:
    """The (code, data) pairs pyhv writes, as Windows does: W2ku absolute, W2ru relative."""
    return [
        (PLATFORM_W2KU, absolute_locator(parent_path).encode("utf-16-le")),
        (PLATFORM_W2RU, relative_locator(child_path.parent, parent_path).encode("utf-16-le")),
    ]


def locator_space(data_length: int) -> int:
    """Bytes reserved for a locator: a page at least, so set-parent can usually rewrite in place."""
    return max(LOCATOR_SPACE, -(-data_length // SECTOR_SIZE) * SECTOR_SIZE)
