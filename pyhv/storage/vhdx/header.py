"""File identifier and the two headers: parse, pack, pick the current one, plan updates.

Pure: bytes in, frozen values out. # Ref: [MS-VHDX] §2.2.1, §2.2.2.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import crc32c

from pyhv.errors import CorruptImage, InvalidFormat, UnsupportedFeature
from pyhv.storage.vhdx import structs as s
from pyhv.units import MiB


def checksum(buf: bytes | bytearray, field_offset: int) -> int:
    """CRC-32C of ``buf`` with the 4-byte checksum field at ``field_offset`` taken as zero."""
    crc = crc32c.crc32c(bytes(buf[:field_offset]))
    crc = crc32c.crc32c(b"\0\0\0\0", crc)
    return crc32c.crc32c(bytes(buf[field_offset + 4 :]), crc)


def parse_file_identifier(buf: bytes) -> str:
    """Return the creator string.

    :raises InvalidFormat: when the signature is not ``vhdxfile``.
    """
    if buf[:8] != s.FILE_IDENTIFIER_SIGNATURE:
        raise InvalidFormat("not a VHDX file: no 'vhdxfile' signature at offset 0")
    return bytes(buf[8:520]).decode("utf-16-le", "replace").split("\0", 1)[0]


def pack_file_identifier(creator: str) -> bytes:
    raw = creator.encode("utf-16-le")[:512]
    out = bytearray(s.FILE_IDENTIFIER_SIZE)
    out[:8] = s.FILE_IDENTIFIER_SIGNATURE
    out[8 : 8 + len(raw)] = raw
    return bytes(out)


@dataclass(frozen=True)
class Header:
    sequence_number: int
    file_write_guid: uuid.UUID
    data_write_guid: uuid.UUID
    log_guid: uuid.UUID
    log_length: int
    log_offset: int
    log_version: int = s.LOG_VERSION
    version: int = s.HEADER_VERSION

    @property
    def log_pending(self) -> bool:
        return self.log_guid != s.NULL_GUID and self.log_length > 0


def parse_header(buf: bytes, offset: int) -> Header:
    """Parse and validate the header stored at file ``offset``.

    :raises CorruptImage: bad signature, checksum or field value (message names it).
    :raises UnsupportedFeature: a version pyhv does not know.
    """
    if len(buf) < s.HEADER_SIZE:
        raise CorruptImage(f"vhdx: header at {offset:#x} is truncated")
    buf = bytes(buf[: s.HEADER_SIZE])
    sig, crc, seq, fwg, dwg, lg, log_version, version, log_len, log_off = (
        s.HEADER_STRUCT.unpack_from(buf)
    )
    if sig != s.HEADER_SIGNATURE:
        raise CorruptImage(f"vhdx: header at {offset:#x} has no 'head' signature")
    if checksum(buf, s.HEADER_CHECKSUM_OFFSET) != crc:
        raise CorruptImage(f"vhdx: header checksum mismatch at {offset:#x}")
    if version != s.HEADER_VERSION or log_version != s.LOG_VERSION:
        raise UnsupportedFeature(
            f"vhdx: header at {offset:#x} has version {version}/log version {log_version}; "
            "only 1/0 is supported"
        )
    if log_len % MiB or log_off % MiB or (log_len and log_off < s.HEADER_SECTION_SIZE):
        raise CorruptImage(
            f"vhdx: header at {offset:#x} places the log at {log_off:#x}+{log_len:#x} "
            "(must be 1 MiB aligned, past the header section)"
        )
    return Header(
        sequence_number=seq,
        file_write_guid=uuid.UUID(bytes_le=fwg),
        data_write_guid=uuid.UUID(bytes_le=dwg),
        log_guid=uuid.UUID(bytes_le=lg),
        log_length=log_len,
        log_offset=log_off,
        log_version=log_version,
        version=version,
    )


def pack_header(h: Header) -> bytes:
    buf = bytearray(s.HEADER_SIZE)
    s.HEADER_STRUCT.pack_into(
        buf,
        0,
        s.HEADER_SIGNATURE,
        0,
        h.sequence_number,
        h.file_write_guid.bytes_le,
        h.data_write_guid.bytes_le,
        h.log_guid.bytes_le,
        h.log_version,
        h.version,
        h.log_length,
        h.log_offset,
    )
    buf[4:8] = checksum(buf, s.HEADER_CHECKSUM_OFFSET).to_bytes(4, "little")
    return bytes(buf)


def select_current(h1: Header | None, h2: Header | None) -> tuple[int, Header]:
    """Pick the current header: the only valid one, or the valid one with the greater sequence
    number. Returns ``(slot, header)`` with slot 0 or 1.

    :raises CorruptImage: none valid, or equal sequence numbers with different content.
    """
    if h1 is None and h2 is None:
        raise CorruptImage("vhdx: no valid header (both copies damaged); the file cannot be read")
    if h2 is None:
        return 0, h1  # type: ignore[return-value]
    if h1 is None:
        return 1, h2
    if h1.sequence_number == h2.sequence_number and h1 != h2:
        raise CorruptImage(
            f"vhdx: both headers have sequence number {h1.sequence_number} but differ"
        )
    return (0, h1) if h1.sequence_number >= h2.sequence_number else (1, h2)


def next_header(
    current: Header,
    *,
    new_file_write: bool = True,
    new_data_write: bool = False,
    log_guid: uuid.UUID | None = None,
) -> Header:
    """The header that replaces ``current`` (sequence + 1, fresh GUIDs as the update needs).

    §2.2.2: FileWriteGuid changes before the first write of a session, DataWriteGuid before the
    first change of user-visible data; children link to the DataWriteGuid.
    """
    return dataclasses.replace(
        current,
        sequence_number=current.sequence_number + 1,
        file_write_guid=uuid.uuid4() if new_file_write else current.file_write_guid,
        data_write_guid=uuid.uuid4() if new_data_write else current.data_write_guid,
        log_guid=current.log_guid if log_guid is None else log_guid,
    )


def update_slots(current_slot: int) -> tuple[int, int]:
    """Header slots to write, in order, so that both end up valid and at least one stays valid
    at every moment: first the non-current slot, then the other one (as Hyper-V and qemu do)."""
    other = 1 - current_slot
    return other, current_slot
