"""Headers and log of an open VHDX: replay on open, session GUIDs, crash-safe metadata updates.

# Ref: [MS-VHDX] §2.2.2 (header update rules), §2.3 (log). One transaction = one log entry:
fdatasync (the data new metadata points at), write the entry, fsync, write the sectors in
place, fsync. pyhv always writes its entry at log offset 0 (see :mod:`.log`).

A session starts at the first change: both headers get a new FileWriteGuid, a new
DataWriteGuid when what the disk shows changes, and a fresh LogGuid (so entries of earlier
sessions are never replayed). A clean end clears LogGuid again.
"""

from __future__ import annotations

import logging
import threading
import uuid

from pyhv.errors import CorruptImage, StateError, StorageError, UnsupportedFeature
from pyhv.storage.vhdx import header as hdr
from pyhv.storage.vhdx import log as loglib
from pyhv.storage.vhdx import structs as s
from pyhv.storage.vhdx.handle import VhdxFile
from pyhv.units import MiB

log = logging.getLogger(__name__)

SECTOR = s.LOG_SECTOR_SIZE
# A read-only open keeps replayed log sectors in memory; logs are small (1 MiB by default), so
# only a damaged one could ask for more than this.
MAX_OVERLAY_BYTES = 64 * MiB


class Journal:
    def __init__(self, file: VhdxFile, writable: bool) -> None:
        self.file = file
        self.writable = writable
        # Merge sets this on the ancestor it writes into: every byte it writes is one the child
        # already shows, so the child must stay linked (DataWriteGuid kept).
        self.keep_identity = False
        self.session_started = False
        self._data_changed = False
        self._sequence = 1
        self._lock = threading.RLock()
        self.slot, self.header = self._read_headers()

    def _read_headers(self) -> tuple[int, hdr.Header]:
        found: list[hdr.Header | None] = []
        errors: list[str] = []
        for off in s.HEADER_OFFSETS:
            try:
                found.append(hdr.parse_header(self.file.pread(off, s.HEADER_SIZE), off))
            except StorageError as err:
                found.append(None)
                errors.append(str(err))
        if found[0] is None and found[1] is None:
            raise CorruptImage(f"{self.file.path}: no valid VHDX header ({errors[0]})")
        return hdr.select_current(found[0], found[1])

    # -- replay on open -------------------------------------------------------------------------
    def replay(self, file_size: int) -> int:
        """Replay a pending log: into the file when writable, else into the file's overlay.
        Returns the file size the image has afterwards.

        :raises CorruptImage: damaged log or truncated file.
        """
        h = self.header
        if not h.log_pending:
            return file_size
        if h.log_offset + h.log_length > file_size:
            raise CorruptImage(f"{self.file.path}: log at {h.log_offset:#x} lies past the end")
        raw = self.file.pread(h.log_offset, h.log_length)
        writes, flushed, last = loglib.replay_writes(loglib.find_active_sequence(raw, h.log_guid))
        loglib.check_replay_bounds(writes, file_size, flushed, last)
        if not self.writable:
            self._replay_in_memory(writes)
            return max(file_size, last)
        log.info("%s: replaying %d log writes", self.file.path, len(writes))
        for w in writes:
            if w.data is not None:
                self.file.pwrite(w.file_offset, w.data)
            else:
                self.file.write_zeros(w.file_offset, w.length)
        if last > file_size:
            self.file.truncate(-(-last // MiB) * MiB)
        self.file.sync()
        self.write_headers(hdr.next_header(h, log_guid=s.NULL_GUID))
        return self.file.size()

    def _replay_in_memory(self, writes: list[loglib.LogWrite]) -> None:
        if sum(w.length for w in writes) > MAX_OVERLAY_BYTES:
            raise UnsupportedFeature(
                f"{self.file.path}: the pending log is too large to replay in memory; open the "
                "image writable or run 'pyhv vhd check --repair' to replay it"
            )
        for w in writes:
            for off in range(w.file_offset, w.file_offset + w.length, SECTOR):
                self.file.overlay[off] = w.data if w.data is not None else bytes(SECTOR)

    # -- headers and sessions -------------------------------------------------------------------
    def write_headers(self, new: hdr.Header) -> None:
        """Both slots, the non-current first, each synced: one valid header at every moment."""
        packed = hdr.pack_header(new)
        for slot in hdr.update_slots(self.slot):
            self.file.pwrite(s.HEADER_OFFSETS[slot], packed)
            self.file.sync()
        self.header = new

    def begin_session(self, data: bool = True) -> None:
        """Before the first change (``data``: of what the disk shows). Locator-only changes keep
        DataWriteGuid, so children of this disk stay linked.

        :raises StateError: the image is open read-only.
        """
        with self._lock:
            if self.session_started and (self._data_changed or not data):
                return
            if not self.writable:
                raise StateError(f"{self.file.path}: image is open read-only")
            log_guid = self.header.log_guid if self.session_started else uuid.uuid4()
            self.write_headers(
                hdr.next_header(
                    self.header,
                    new_file_write=not self.session_started,
                    new_data_write=data and not self.keep_identity,
                    log_guid=log_guid,
                )
            )
            self.session_started = True
            self._data_changed = data

    def end_session(self) -> None:
        """Clean close: LogGuid back to zero, so nobody replays anything."""
        with self._lock:
            if self.session_started:
                self.file.sync()
                self.write_headers(hdr.next_header(self.header, log_guid=s.NULL_GUID))
                self.session_started = False

    # -- transactions ---------------------------------------------------------------------------
    def transaction(
        self,
        sectors: dict[int, bytes],
        zeros: list[tuple[int, int]],
        *,
        last_file_offset: int,
        data: bool = True,
    ) -> None:
        """Write ``sectors`` (offset → 4 KiB) and zero ranges so a crash leaves all or none."""
        if not sectors and not zeros:
            return
        with self._lock:
            self.begin_session(data)
            h = self.header
            entry = loglib.build_log_entry(
                sequence_number=self._sequence,
                log_guid=h.log_guid,
                sectors=sectors,
                zeros=zeros,
                flushed_file_offset=self.file.size(),
                last_file_offset=last_file_offset,
                log_length=h.log_length,
            )
            self._sequence += 1
            self.file.sync(data_only=True)
            self.file.pwrite(h.log_offset, entry)
            self.file.sync()
            for off, length in zeros:
                self.file.write_zeros(off, length)
            for off, content in sectors.items():
                self.file.pwrite(off, content)
            self.file.sync()

    def retire_entry(self) -> None:
        """Blank pyhv's (already applied) entry, before the file shrinks below the size the
        entry names as flushed: a replay would otherwise take the shorter file for damage."""
        with self._lock:
            self.begin_session(data=False)
            self.file.pwrite(self.header.log_offset, bytes(SECTOR))
            self.file.sync()
