"""The memory half of a running VM's checkpoint: QEMU migrates into the file while the guest
runs and stops it for the last round; the file is flushed meanwhile, the downtime limit
rises when the guest outruns the file, the caller continues only once QEMU's run state has
settled, and a failure on either side of the setup undoes the other."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from test_worker_lifecycle import Listeners

from pyhv.errors import QmpError, StorageError
from pyhv.worker import checkpoint_ops, memory_save
from pyhv.worker.checkpoint_disks import SwappedDisks
from pyhv.worker.checkpoint_ops import CheckpointOps
from pyhv.worker.memory_save import (
    DOWNTIME_MS,
    MAX_DOWNTIME_MS,
    MemorySave,
    next_downtime,
    partial_path,
)
from pyhv.worker.qmp import QmpEvent

CHUNK = 64 * 1024
STOPPED_AT = 1_800_000_000.25


class MigratingQmp(Listeners):
    """QEMU migrating into the file: ``rounds`` chunks written a few ms apart while the
    guest runs, then STOP and the MIGRATION event (or ``fails``); its run state stays
    ``finish-migrate`` for ``settling`` polls after that."""

    def __init__(self, fd: int, rounds: int, *, fails: bool = False, settling: int = 1) -> None:
        self.fd = fd
        self.rounds = rounds
        self.fails = fails
        self.settling = settling
        super().__init__()
        self.sent: list[tuple[str, Any]] = []
        self.status = "running"
        self.writer: asyncio.Task[None] | None = None

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append((cmd, args))
        if cmd == "migrate":
            self.writer = asyncio.create_task(self._migrate())
        elif cmd == "query-status":
            if self.status == "finish-migrate" and self.settling == 0:
                self.status = "postmigrate"
            self.settling -= 1
            return {"status": self.status}
        elif cmd == "query-migrate":
            return {"status": "failed", "error-desc": "EIO"} if self.fails else {}
        return {}

    async def _migrate(self) -> None:
        for _ in range(self.rounds):
            os.write(self.fd, b"x" * CHUNK)
            await asyncio.sleep(0.01)
        if self.fails:
            self.emit(QmpEvent("MIGRATION", {"status": "failed"}))
            return
        self.status = "finish-migrate"
        self.emit(QmpEvent("STOP", {}, STOPPED_AT))
        self.emit(QmpEvent("MIGRATION", {"status": "completed"}))


def save_to(tmp_path: Path, rounds: int, **options: Any) -> tuple[MemorySave, MigratingQmp]:
    path = tmp_path / "m.vmrs"
    fd = os.open(partial_path(path), os.O_WRONLY | os.O_CREAT, 0o600)
    qmp = MigratingQmp(fd, rounds, **options)
    return MemorySave(cast(Any, qmp), path, fd), qmp


def test_the_guest_is_left_stopped_at_the_instant_the_file_holds(tmp_path: Path) -> None:
    save, qmp = save_to(tmp_path, rounds=3, settling=2)

    async def go() -> None:
        await save.run()
        assert qmp.status == "postmigrate"  # not finish-migrate: a cont now would be undone
        await save.finish()

    asyncio.run(go())
    assert save.stopped_at == STOPPED_AT
    assert save.path.stat().st_size == 3 * CHUNK
    assert not partial_path(save.path).exists()
    assert ("migrate-set-parameters", {"downtime-limit": DOWNTIME_MS * 4}) not in qmp.sent


def test_the_file_is_flushed_while_qemu_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save, _ = save_to(tmp_path, rounds=12)
    sizes_at_flush: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        sizes_at_flush.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    asyncio.run(save.run())
    assert len(sizes_at_flush) >= 2 and 0 < sizes_at_flush[-1] < 12 * CHUNK


def test_a_guest_that_outruns_the_file_gets_a_higher_downtime_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_save, "ESCALATE_S", 0.02)
    save, qmp = save_to(tmp_path, rounds=8)
    asyncio.run(save.run())
    limits = [a["downtime-limit"] for c, a in qmp.sent if c == "migrate-set-parameters"]
    assert limits[:2] == [DOWNTIME_MS * 4, DOWNTIME_MS * 16]


def test_the_downtime_limit_rises_to_a_bound() -> None:
    assert next_downtime(DOWNTIME_MS) == 4 * DOWNTIME_MS
    assert next_downtime(MAX_DOWNTIME_MS // 2) == MAX_DOWNTIME_MS
    assert next_downtime(MAX_DOWNTIME_MS) == MAX_DOWNTIME_MS


def test_a_failed_migration_says_why_and_leaves_no_file(tmp_path: Path) -> None:
    save, qmp = save_to(tmp_path, rounds=2, fails=True)

    async def go() -> None:
        with pytest.raises(QmpError, match="EIO"):
            await save.run()
        await save.abort()

    asyncio.run(go())
    assert ("migrate_cancel", None) in qmp.sent
    assert not partial_path(save.path).exists() and not save.path.exists()


def test_a_failed_write_back_fails_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reports a failed write-back once: the final fsync would not see it."""
    save, _ = save_to(tmp_path, rounds=3)

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def go() -> None:
        await save.run()
        with pytest.raises(OSError, match="Input/output"):
            await save.finish()

    asyncio.run(go())
    assert not partial_path(save.path).exists() and not save.path.exists()


class RecordingQmp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append((cmd, args))
        return {}


class UndoneDisks(SwappedDisks):
    undone = False

    async def undo(self) -> None:
        self.undone = True


def test_children_that_fail_abort_the_memory_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qmp = RecordingQmp()
    path = tmp_path / "m.vmrs"

    async def prepare(qmp: Any, memory: Path) -> MemorySave:
        fd = os.open(partial_path(memory), os.O_WRONLY | os.O_CREAT, 0o600)
        return MemorySave(qmp, memory, fd)

    async def no_children(provider: Any, children: Any) -> SwappedDisks:
        raise StorageError("disk full")

    monkeypatch.setattr(checkpoint_ops, "prepare_memory_save", prepare)
    monkeypatch.setattr(checkpoint_ops, "make_children", no_children)
    ops = CheckpointOps(cast(Any, SimpleNamespace(disks=None)))
    with pytest.raises(StorageError, match="disk full"):
        asyncio.run(ops._prepare(cast(Any, qmp), {}, path))
    assert ("closefd", {"fdname": memory_save.FD_NAME}) in qmp.sent
    assert not partial_path(path).exists()


def test_a_memory_save_that_fails_undoes_the_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = UndoneDisks(cast(Any, None))

    async def refused(qmp: Any, memory: Path) -> MemorySave:
        raise QmpError("no such fd")

    async def children(provider: Any, children: Any) -> SwappedDisks:
        return made

    monkeypatch.setattr(checkpoint_ops, "prepare_memory_save", refused)
    monkeypatch.setattr(checkpoint_ops, "make_children", children)
    ops = CheckpointOps(cast(Any, SimpleNamespace(disks=None)))
    with pytest.raises(QmpError, match="no such fd"):
        asyncio.run(ops._prepare(cast(Any, RecordingQmp()), {}, tmp_path / "m.vmrs"))
    assert made.undone
