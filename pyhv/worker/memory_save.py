"""A checkpoint's memory half: QEMU's migration stream written to a file.

A running guest is saved by QEMU's ordinary (pre-copy) live migration into the file: QEMU
writes all of RAM while the guest runs, then the pages the guest changed meanwhile, round
after round, until the rest would take less than the downtime limit; then it stops the
guest itself, writes that rest and the devices, and the file holds that instant. The caller
swaps the disks in that stop and resumes the guest (:mod:`pyhv.worker.checkpoint_ops`).

QEMU's ``background-snapshot`` (the guest runs on while QEMU writes the memory of the
instant it started, copying pages before the guest changes them) looks like the better fit
and was what pyhv used first, but QEMU 7.2 spends three system calls per 4 KiB page on it
(write protection lifted page by page): 0.54 s for a 512 MiB guest with 16 ms of downtime,
where the pre-copy migration took 0.08 s with 3-4 ms (same guest, same run, TCG).

A guest that changes memory faster than the file takes it would never get under the limit:
each second without completion raises the limit fourfold, so the save ends with a longer
pause rather than never. A paused VM stays paused (the same migration, no vCPU to stop).

The file is written as ``<name>.partial`` and renamed once it is complete and on the disk,
so a memory file that exists is always whole. It is flushed while QEMU writes it, so the
fsync at the end finds little left to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhv.errors import QmpError
from pyhv.storage.operations.files import fsync_dir
from pyhv.worker import qmp as q

log = logging.getLogger(__name__)

FD_NAME = "checkpoint"
#: QEMU limits a migration to 128 MiB/s unless told otherwise; a file takes what it can.
MAX_BANDWIDTH = 1 << 40
#: The pause QEMU aims at for its last round (its default, 300 ms, is for networks).
DOWNTIME_MS = 5
#: Without completion after this long, the downtime limit is raised ...
ESCALATE_S = 1.0
#: ... by this factor, up to :data:`MAX_DOWNTIME_MS`.
ESCALATE_BY = 4
MAX_DOWNTIME_MS = 10_000
#: How often the file written so far is pushed to the disk while QEMU still writes it.
WRITE_BACK_S = 0.05
#: The run state after QEMU completed is set a moment after the MIGRATION event.
STATE_POLL_S = 0.001
STATE_TIMEOUT_S = 10.0


def account(info: dict[str, Any]) -> str:
    """QEMU's own figures of a completed migration: where a long pause came from."""
    ram = info.get("ram", {})
    return (
        f"{ram.get('dirty-sync-count', '?')} rounds, {int(ram.get('total', 0)) >> 20} MiB RAM, "
        f"{int(ram.get('transferred', 0)) >> 20} MiB written, {info.get('total-time', '?')} ms, "
        f"guest stopped {info.get('downtime', '?')} ms of them"
    )


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.partial")


def next_downtime(limit_ms: int) -> int:
    """The downtime limit after ``limit_ms`` did not let the migration end in time."""
    return min(MAX_DOWNTIME_MS, limit_ms * ESCALATE_BY)


async def prepare_memory_save(qmp: q.Qmp, path: Path) -> MemorySave:
    """Set the migration up before it starts: parameters, MIGRATION events, and the file
    (``path`` as ``.partial``) handed to QEMU already.

    :raises QmpError: QEMU refused; nothing is left behind.
    """
    params = {"max-bandwidth": MAX_BANDWIDTH, "downtime-limit": DOWNTIME_MS}
    await qmp.execute("migrate-set-parameters", params)
    caps = [{"capability": "events", "state": True}]
    await qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    fd = os.open(partial_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    save = MemorySave(qmp, path, fd)
    try:
        qmp.send_fd(fd)
        await qmp.execute("getfd", {"fdname": FD_NAME})
    except BaseException:
        await save.abort()
        raise
    return save


@dataclass
class MemorySave:
    """One migration to a file: :meth:`run`, then :meth:`finish` or :meth:`abort`."""

    qmp: q.Qmp
    path: Path
    fd: int
    started: bool = False  # ``migrate`` was sent
    #: When QEMU stopped the guest for the last round (wall clock), if it was running.
    stopped_at: float | None = None
    write_error: OSError | None = None
    _write_back: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Migrate into the file until QEMU has written all of it; a running guest is then
        stopped (by QEMU, ``postmigrate``), and stays so until the caller continues it.

        :raises QmpError: the migration failed; QEMU has resumed a guest that was running.
        """
        with self.qmp.listen("MIGRATION", "STOP") as events:
            self.started = True
            await self.qmp.execute("migrate", {"uri": f"fd:{FD_NAME}"})
            written = asyncio.Event()
            self._write_back = asyncio.create_task(self._push(written))
            try:
                await self._until_complete(events)
            finally:
                written.set()  # a flush under way ends after the pause, not in it
        await self._until_state_settled()

    async def _until_complete(self, events: q.EventQueue) -> None:
        """Wait for QEMU's MIGRATION event saying it is done, raising the downtime limit
        each :data:`ESCALATE_S` it is not.

        :raises QmpError: the migration failed or was cancelled.
        """
        limit = DOWNTIME_MS
        while True:
            try:
                ev = await asyncio.wait_for(events.get(), ESCALATE_S)
            except TimeoutError:
                if limit < MAX_DOWNTIME_MS:
                    limit = next_downtime(limit)
                    args = {"downtime-limit": limit}
                    await self.qmp.execute("migrate-set-parameters", args)
                continue
            if ev.name == "STOP":
                self.stopped_at = ev.at
                continue
            status = ev.data.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                info = await self.qmp.execute("query-migrate")
                detail = info.get("error-desc", status)
                raise QmpError(f"saving the VM's memory failed: {detail}")

    async def _until_state_settled(self) -> None:
        """QEMU reports completion before its run state leaves ``finish-migrate``, and a
        ``cont`` in between would be undone by it: wait for the final state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STATE_TIMEOUT_S
        while await q.query_status(self.qmp) == "finish-migrate":
            if loop.time() > deadline:
                raise QmpError(f"QEMU did not finish the migration within {STATE_TIMEOUT_S:g} s")
            await asyncio.sleep(STATE_POLL_S)

    async def finish(self) -> None:
        """Make the complete file durable under its final name.

        :raises OSError: it could not be written to the disk (the partial file is removed).
        """
        try:
            await self._written_back()
            if self.write_error is not None:
                raise self.write_error
            await asyncio.to_thread(os.fsync, self.fd)
        except BaseException:
            self.discard()
            raise
        os.close(self.fd)
        os.replace(partial_path(self.path), self.path)
        fsync_dir(self.path.parent)
        with contextlib.suppress(QmpError):
            log.info("memory saved: %s", account(await self.qmp.execute("query-migrate")))

    async def _written_back(self) -> None:
        if self._write_back is not None:
            await self._write_back

    async def _push(self, written: asyncio.Event) -> None:
        """Flush the file to the disk over and over while QEMU writes it, until ``written``,
        so that the final fsync finds only the last few megabytes dirty instead of the whole
        file (about 0.1 s per 100 MiB here). An error is kept for :meth:`finish`: the kernel
        reports a failed write-back once, so the final fsync would no longer see it."""
        await asyncio.sleep(0)
        while not written.is_set() and self.write_error is None:
            if WRITE_BACK_S > 10:
                return
            try:
                await asyncio.to_thread(os.fdatasync, self.fd)
            except OSError as e:
                self.write_error = e
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(written.wait(), WRITE_BACK_S)

    async def abort(self) -> None:
        """Cancel a migration that must not complete (the checkpoint failed), or take the
        file back from QEMU when it was never started."""
        if self.started:
            with contextlib.suppress(QmpError):
                await self.qmp.execute("migrate_cancel")
            with contextlib.suppress(QmpError):
                await q.wait_migration(self.qmp)
            await self._written_back()
        else:
            with contextlib.suppress(QmpError):
                await self.qmp.execute("closefd", {"fdname": FD_NAME})
        self.discard()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        partial_path(self.path).unlink(missing_ok=True)
