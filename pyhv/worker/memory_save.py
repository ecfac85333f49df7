"""A checkpoint's memory half: QEMU's migration stream written to a file while the guest runs.

With the ``background-snapshot`` migration capability (QEMU ≥ 6.0; needs userfaultfd
write-protection, which the memfd guest memory supports) QEMU saves the device state with
the vCPUs stopped, then resumes the guest *by itself* and writes RAM in the background,
copying each page the guest is about to change first. The file therefore holds the instant
of that stop. We stop the guest before starting it, so the disks can be swapped at the same
instant (see :mod:`pyhv.worker.checkpoint_ops`), and wait for QEMU's own resume.

A paused VM stays paused: its memory is written by an ordinary migration.

The file is written as ``<name>.partial`` and renamed once QEMU reports completion, so a
memory file that exists is always whole.
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

FD_NAME = "checkpoint"
RESUME_TIMEOUT_S = 60.0
POLL_S = 0.005


#: QEMU limits a migration to 128 MiB/s unless told otherwise; a file takes what it can.
MAX_BANDWIDTH = 1 << 40


def capability(on: bool) -> dict[str, Any]:
    return {"capabilities": [{"capability": "background-snapshot", "state": on}]}


async def prepare_memory_save(qmp: q.Qmp, *, background: bool) -> None:
    """Set the migration up before the guest is stopped, to keep the stop short.

    :raises QmpError: QEMU refused (``background-snapshot`` needs userfaultfd).
    """
    await qmp.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    if background:
        await qmp.execute("migrate-set-capabilities", capability(True))


async def reset_memory_save(qmp: q.Qmp) -> None:
    """Turn ``background-snapshot`` off again, so a later Save or live migration is normal."""
    with contextlib.suppress(QmpError):
        await qmp.execute("migrate-set-capabilities", capability(False))


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.partial")


@dataclass
class MemorySave:
    """One migration to a file, from :func:`start_memory_save` to :meth:`finish`."""

    qmp: q.Qmp
    path: Path
    fd: int
    background: bool

    async def finish(self) -> None:
        """Wait for QEMU to complete the file, then make it durable under its final name.

        :raises QmpError: the migration failed (the partial file is removed).
        """
        try:
            await q.wait_migration(self.qmp)
            await asyncio.to_thread(os.fsync, self.fd)
        except BaseException:
            self.discard()
            raise
        finally:
            await self._reset()
        os.close(self.fd)
        os.replace(partial_path(self.path), self.path)
        fsync_dir(self.path.parent)

    async def abort(self) -> None:
        """Cancel a migration that must not complete (the checkpoint failed)."""
        with contextlib.suppress(QmpError):
            await self.qmp.execute("migrate_cancel")
        with contextlib.suppress(QmpError):
            await q.wait_migration(self.qmp)
        self.discard()
        await self._reset()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        partial_path(self.path).unlink(missing_ok=True)

    async def _reset(self) -> None:
        if self.background:
            await reset_memory_save(self.qmp)


async def start_memory_save(qmp: q.Qmp, path: Path, *, background: bool) -> MemorySave:
    """Start writing the VM's state to ``path`` (as ``.partial``) after
    :func:`prepare_memory_save`; the guest must be stopped.

    With ``background`` this returns once QEMU has saved the devices and resumed the guest.

    :raises QmpError: QEMU refused; nothing is left behind and the guest is still stopped.
    """
    fd = os.open(partial_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    save = MemorySave(qmp, path, fd, background)
    try:
        await q.migrate_to_fd(qmp, fd, FD_NAME)
        if background:
            await _until_resumed(qmp)
    except BaseException:
        await save.abort()
        raise
    return save


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
