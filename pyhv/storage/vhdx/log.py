"""The metadata log: parse entries, find the active sequence, plan a replay, build entries.

Pure. # Ref: [MS-VHDX] §2.3 (log), §2.3.1–2.3.3 (entry, descriptors, data sectors), §2.3.4
(replay). pyhv writes one self-contained entry per metadata transaction at log offset 0 with
``Tail = 0``; the previous entry was fully applied and flushed before, so overwriting it is safe
and the log never holds more than one valid entry of pyhv's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pyhv.errors import CorruptImage, UnsupportedFeature
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.header import checksum

SECTOR = s.LOG_SECTOR_SIZE


@dataclass(frozen=True)
class LogWrite:
    """One replay step: ``data`` (4 KiB) at ``file_offset``, or ``length`` zero bytes."""

    file_offset: int
    data: bytes | None
    length: int


@dataclass(frozen=True)
class LogEntry:
    position: int  # byte offset inside the log
    sequence_number: int
    entry_length: int
    tail: int
    flushed_file_offset: int
    last_file_offset: int
    writes: tuple[LogWrite, ...]


def descriptor_sectors(count: int) -> int:
    # The 64-byte entry header takes the room of two descriptors in the first sector.
    return -(-(count + 2) // s.LOG_DESCRIPTORS_PER_SECTOR)


def parse_log_entry(log: bytes, position: int, log_guid: uuid.UUID) -> LogEntry | None:
    """The valid entry starting at ``position`` of the circular ``log``, else None."""
    size = len(log)
    hs = s.LOG_ENTRY_HEADER_STRUCT
    if log[position : position + 4] != s.LOG_ENTRY_SIGNATURE:
        return None
    _sig, crc, length, tail, seq, count, _, raw_guid, flushed, last = hs.unpack_from(log, position)
    if (
        uuid.UUID(bytes_le=raw_guid) != log_guid
        or length == 0
        or length % SECTOR
        or length > size
        or tail % SECTOR
        or tail >= size
        or seq == 0
        or (descriptor_sectors(count) * SECTOR > length)
    ):
        return None
    raw = log[position : position + length]
    if len(raw) < length:  # the entry wraps around the end of the circular log
        raw += log[: length - len(raw)]
    if checksum(raw, s.LOG_ENTRY_CHECKSUM_OFFSET) != crc:
        return None
    writes = _parse_descriptors(raw, count, seq, descriptor_sectors(count))
    if writes is None:
        return None
    return LogEntry(position, seq, length, tail, flushed, last, tuple(writes))


def _parse_descriptors(
    raw: bytes, count: int, seq: int, desc_sectors: int
) -> list[LogWrite] | None:
    writes: list[LogWrite] = []
    data_sector = desc_sectors
    for i in range(count):
        off = s.LOG_ENTRY_HEADER_STRUCT.size + i * s.LOG_DESCRIPTOR_SIZE
        sig = raw[off : off + 4]
        if sig == s.ZERO_DESCRIPTOR_SIGNATURE:
            _, _, zlen, foff, dseq = s.ZERO_DESCRIPTOR_STRUCT.unpack_from(raw, off)
            if dseq != seq or zlen % SECTOR or foff % SECTOR:
                return None
            writes.append(LogWrite(foff, None, zlen))
        elif sig == s.DATA_DESCRIPTOR_SIGNATURE:
            _, trailing, leading, foff, dseq = s.DATA_DESCRIPTOR_STRUCT.unpack_from(raw, off)
            start = data_sector * SECTOR
            sector = raw[start : start + SECTOR]
            if dseq != seq or foff % SECTOR or len(sector) < SECTOR:
                return None
            if sector[:4] != s.DATA_SECTOR_SIGNATURE:
                return None
            high = int.from_bytes(sector[4:8], "little")
            low = int.from_bytes(sector[4092:4096], "little")
            if (high << 32 | low) != seq:
                return None
            payload = leading + sector[s.DATA_SECTOR_PAYLOAD] + trailing.to_bytes(4, "little")
            writes.append(LogWrite(foff, payload, SECTOR))
            data_sector += 1
        else:
            return None
    return writes


def find_active_sequence(log: bytes, log_guid: uuid.UUID) -> list[LogEntry]:
    """The run of consecutive valid entries whose last entry has the highest sequence number
    (what must be replayed); [] when the log holds no valid entry."""
    entries: dict[int, LogEntry] = {}
    for pos in range(0, len(log) - SECTOR + 1, SECTOR):
        entry = parse_log_entry(log, pos, log_guid)
        if entry is not None:
            entries[pos] = entry
    best: list[LogEntry] = []
    for start in entries.values():
        run = [start]
        seen = {start.position}
        while True:
            nxt = entries.get((run[-1].position + run[-1].entry_length) % len(log))
            if nxt is None or nxt.sequence_number != run[-1].sequence_number + 1:
                break
            if nxt.position in seen:
                break
            seen.add(nxt.position)
            run.append(nxt)
        # §2.3.4: a sequence is complete only if its last entry's tail names its first entry.
        while run and run[-1].tail != run[0].position:
            run.pop(0)
        if run and (not best or run[-1].sequence_number > best[-1].sequence_number):
            best = run
    return best


def replay_writes(sequence: list[LogEntry]) -> tuple[list[LogWrite], int, int]:
    """(writes in replay order, required file size, file size to extend to)."""
    writes = [w for e in sequence for w in e.writes]
    flushed = max((e.flushed_file_offset for e in sequence), default=0)
    last = max((e.last_file_offset for e in sequence), default=0)
    return writes, flushed, last


def build_log_entry(
    *,
    sequence_number: int,
    log_guid: uuid.UUID,
    sectors: dict[int, bytes],
    zeros: list[tuple[int, int]],
    flushed_file_offset: int,
    last_file_offset: int,
    log_length: int,
    tail: int = 0,
) -> bytes:
    """One log entry carrying ``sectors`` (file offset → 4 KiB) and zero ranges.

    :raises UnsupportedFeature: when the change does not fit in the log.
    """
    count = len(sectors) + len(zeros)
    dsec = descriptor_sectors(count)
    length = (dsec + len(sectors)) * SECTOR
    if length > log_length:
        raise UnsupportedFeature(
            f"vhdx: a metadata update of {len(sectors)} sectors does not fit the "
            f"{log_length // 1024} KiB log"
        )
    buf = bytearray(length)
    desc = s.LOG_ENTRY_HEADER_STRUCT.size
    for offset, zlen in zeros:
        s.ZERO_DESCRIPTOR_STRUCT.pack_into(
            buf, desc, s.ZERO_DESCRIPTOR_SIGNATURE, 0, zlen, offset, sequence_number
        )
        desc += s.LOG_DESCRIPTOR_SIZE
    data_pos = dsec * SECTOR
    for offset in sorted(sectors):
        data = sectors[offset]
        if len(data) != SECTOR or offset % SECTOR:
            raise ValueError("log data must be whole 4 KiB sectors")
        s.DATA_DESCRIPTOR_STRUCT.pack_into(
            buf,
            desc,
            s.DATA_DESCRIPTOR_SIGNATURE,
            int.from_bytes(data[4092:], "little"),
            data[:8],
            offset,
            sequence_number,
        )
        desc += s.LOG_DESCRIPTOR_SIZE
        buf[data_pos : data_pos + 4] = s.DATA_SECTOR_SIGNATURE
        buf[data_pos + 4 : data_pos + 8] = (sequence_number >> 32).to_bytes(4, "little")
        buf[data_pos + 8 : data_pos + 4092] = data[s.DATA_SECTOR_PAYLOAD]
        buf[data_pos + 4092 : data_pos + 4096] = (sequence_number & 0xFFFFFFFF).to_bytes(
            4, "little"
        )
        data_pos += SECTOR
    s.LOG_ENTRY_HEADER_STRUCT.pack_into(
        buf,
        0,
        s.LOG_ENTRY_SIGNATURE,
        0,
        length,
        tail,
        sequence_number,
        count,
        0,
        log_guid.bytes_le,
        flushed_file_offset,
        last_file_offset,
    )
    buf[4:8] = checksum(buf, s.LOG_ENTRY_CHECKSUM_OFFSET).to_bytes(4, "little")
    return bytes(buf)


def check_replay_bounds(writes: list[LogWrite], file_size: int, flushed: int, last: int) -> None:
    """:raises CorruptImage: when the file is shorter than the log says it was when written,
    a write lands on the file identifier or the headers (which are never logged), or past
    the file size the log itself declares."""
    if file_size < flushed:
        raise CorruptImage(
            f"vhdx: file is {file_size} bytes but the log says {flushed} were flushed "
            "(truncated file)"
        )
    limit = max(file_size, last)
    if limit > file_size + s.MAX_VIRTUAL_DISK_SIZE:
        raise CorruptImage(f"vhdx: log entry claims an absurd file size {last}")
    for w in writes:
        if w.file_offset < s.REGION_TABLE_1_OFFSET:
            raise CorruptImage(f"vhdx: log entry writes over the headers at {w.file_offset:#x}")
        if w.file_offset + w.length > limit:
            raise CorruptImage(
                f"vhdx: log entry writes {w.length} bytes at {w.file_offset:#x}, past the "
                f"file size {limit}"
            )
