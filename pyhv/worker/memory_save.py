"""A checkpoint's memory half: QEMU's migration stream written to a file while the guest runs.

With the ``background-snapshot`` migration capability (QEMU ≥ 6.0; needs userfaultfd
write-protection, which the memfd guest memory supports) QEMU saves the device state with
the vCPUs stopped, then resumes the guest *by itself* and writes RAM in the background,
copying each page the guest is about to change first. The file therefore holds the instant
of that stop. We stop the guest before starting it, so the disks can be swapped at the same
instant (see :mod:`pyhv.worker.checkpoint_ops`), and wait for QEMU's own resume.

A paused VM stays paused: its memory is written by an ordinary migration.

The file is written as ``<name>.partial`` and renamed once QEMU reports completion, so a
memory file that exists is always whole. It is flushed to the disk while QEMU writes it, so
the fsync after completion finds little left to write.

Inside QEMU 7.2 a background snapshot costs three system calls per 4 KiB page (the write of
its buffer, the ioctl lifting the page's write protection, a read of the userfaultfd), and
no migration capability or parameter shortens that: multifd, compression and xbzrle are
refused with it, and only huge-page guest memory would save pages in bigger runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyhv.errors import QmpError
from pyhv.storage.operations.files import fsync_dir
from pyhv.worker import qmp as q
from pyhv.worker.qemu_argv import MEMORY_BACKEND_ID

FD_NAME = "checkpoint"
RESUME_TIMEOUT_S = 60.0
POLL_S = 0.002
FINISH_POLL_S = 0.02  # the checkpoint is done when the file is: do not idle long after it
#: How often the file written so far is pushed to the disk while QEMU still writes it.
WRITE_BACK_S = 0.05


#: QEMU limits a migration to 128 MiB/s unless told otherwise; a file takes what it can.
MAX_BANDWIDTH = 1 << 40


def capability(on: bool) -> dict[str, Any]:
    return {"capabilities": [{"capability": "background-snapshot", "state": on}]}


async def prepare_memory_save(qmp: q.Qmp, path: Path, *, background: bool) -> MemorySave:
    """Set the migration up before the guest is stopped, to keep the stop short: parameters,
    capability, and the file (``path`` as ``.partial``) handed to QEMU already.

    :raises QmpError: QEMU refused (``background-snapshot`` needs userfaultfd); nothing is
        left behind.
    """
    await qmp.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    if background:
        await populate_memory(qmp)
        await qmp.execute("migrate-set-capabilities", capability(True))
    fd = os.open(partial_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    save = MemorySave(qmp, path, fd, background)
    try:
        qmp.send_fd(fd)
        await qmp.execute("getfd", {"fdname": FD_NAME})
    except BaseException:
        await save.abort()
        raise
    return save


async def populate_memory(qmp: q.Qmp) -> None:
    """Map every page of the guest's RAM into QEMU now, while the guest runs.

    Write tracking needs every page mapped, and QEMU maps the missing ones when the
    migration starts, inside the stop: 0.4-0.9 s for 512 MiB at the first checkpoint of a
    QEMU process. Setting ``prealloc`` on the running memory backend does it with
    MADV_POPULATE_WRITE, which leaves the contents alone; once set it does nothing more.
    """
    args = {"path": f"/objects/{MEMORY_BACKEND_ID}", "property": "prealloc", "value": True}
    await qmp.execute("qom-set", args)


async def reset_memory_save(qmp: q.Qmp) -> None:
    """Turn ``background-snapshot`` off again, so a later Save or live migration is normal."""
    with contextlib.suppress(QmpError):
        await qmp.execute("migrate-set-capabilities", capability(False))


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.partial")


def poll_delay(last: tuple[float, int] | None, now: float, remaining: int) -> float:
    """How long to wait before asking QEMU again, ``remaining`` bytes of RAM to save at
    ``now`` and ``last`` the previous (time, bytes): until they should all be saved at the
    rate since then, between :data:`POLL_S` and :data:`FINISH_POLL_S`."""
    if remaining == 0:
        return POLL_S  # only the end of the stream is left
    if last is None or last[1] <= remaining:
        return FINISH_POLL_S
    rate = (last[1] - remaining) / max(now - last[0], 1e-6)
    return min(FINISH_POLL_S, max(POLL_S, remaining / rate))


@dataclass
class MemorySave:
    """One migration to a file, from :func:`start_memory_save` to :meth:`finish`."""

    qmp: q.Qmp
    path: Path
    fd: int
    background: bool
    started: bool = False  # ``migrate`` was sent

    async def finish(self) -> None:
        """Wait for QEMU to complete the file, then make it durable under its final name.

        :raises QmpError: the migration failed (the partial file is removed).
        """
        written = asyncio.Event()
        write_back = asyncio.create_task(self._write_back(written))
        try:
            try:
                await self._until_complete()
            finally:
                written.set()
                await write_back
            await asyncio.to_thread(os.fsync, self.fd)
        except BaseException:
            self.discard()
            raise
        finally:
            await self._reset()
        os.close(self.fd)
        os.replace(partial_path(self.path), self.path)
        fsync_dir(self.path.parent)

    async def _until_complete(self) -> None:
        """Poll ``query-migrate`` until QEMU is done, at the moment it should be done.

        QEMU reports the RAM still to save; the rate it went down at since the last poll
        says when that reaches zero, and the next poll comes then (:func:`poll_delay`): a
        fixed interval would idle half of one on average after the file is complete. (The
        MIGRATION event would need the worker's one event reader and the ``events``
        capability; this keeps the save self-contained.)

        :raises QmpError: the migration failed or was cancelled.
        """
        loop = asyncio.get_running_loop()
        last: tuple[float, int] | None = None
        while True:
            info = await self.qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise QmpError(f"saving the VM's state failed: {info.get('error-desc', status)}")
            now, remaining = loop.time(), int(info.get("ram", {}).get("remaining", 0))
            await asyncio.sleep(poll_delay(last, now, remaining))
            last = (now, remaining)

    async def _write_back(self, written: asyncio.Event) -> None:
        """Flush the file to the disk over and over while QEMU writes it, until ``written``,
        so that the final fsync finds only the last few megabytes dirty instead of the whole
        file (about 0.1 s per 100 MiB here, all of it after QEMU is done otherwise). An
        error ends the save: the kernel reports a failed write-back once, so the final fsync
        would no longer see it."""
        while not written.is_set():
            await asyncio.to_thread(os.fdatasync, self.fd)
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
        else:
            with contextlib.suppress(QmpError):
                await self.qmp.execute("closefd", {"fdname": FD_NAME})
        self.discard()
        await self._reset()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        partial_path(self.path).unlink(missing_ok=True)

    async def _reset(self) -> None:
        if self.background:
            await reset_memory_save(self.qmp)


async def start_memory_save(save: MemorySave) -> None:
    """Start writing the VM's state into the file of :func:`prepare_memory_save`; the guest
    must be stopped. With ``background`` this returns once QEMU has saved the devices and
    resumed the guest.

    :raises QmpError: QEMU refused; nothing is left behind and the guest is still stopped.
    """
    save.started = True
    try:
        await save.qmp.execute("migrate", {"uri": f"fd:{FD_NAME}"})
        if save.background:
            await _until_resumed(save.qmp)
    except BaseException:
        await save.abort()
        raise


async def _until_resumed(qmp: q.Qmp) -> None:
    """Poll until QEMU has resumed the guest after saving the devices, or gave up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESUME_TIMEOUT_S
    while await q.query_status(qmp) != "running":
        info = await qmp.execute("query-migrate")
        if info.get("status") in ("failed", "cancelled"):
            raise QmpError(f"saving the memory failed: {info.get('error-desc', info['status'])}")
        if loop.time() > deadline:
            raise QmpError(f"QEMU did not resume the guest within {RESUME_TIMEOUT_S:g} s")
        await asyncio.sleep(POLL_S)
