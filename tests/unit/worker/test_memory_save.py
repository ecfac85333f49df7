"""The memory half of a running VM's checkpoint: the file is flushed while QEMU writes it,
completion is polled when it is due, and a failure on either side of the setup undoes the
other."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pyhv.errors import QmpError, StorageError
from pyhv.worker import checkpoint_ops, memory_save
from pyhv.worker.checkpoint_disks import SwappedDisks
from pyhv.worker.checkpoint_ops import CheckpointOps
from pyhv.worker.memory_save import (
    FINISH_POLL_S,
    POLL_S,
    MemorySave,
    capability,
    partial_path,
    poll_delay,
)

MIB = 1 << 20


class MigratingQmp:
    """QEMU writing the stream: each ``query-migrate`` appends a chunk to the file first."""

    def __init__(self, fd: int, answers: list[dict[str, Any]]) -> None:
        self.fd = fd
        self.answers = answers
        self.sent: list[str] = []

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append(cmd)
        if cmd == "query-migrate":
            os.write(self.fd, b"x" * 4096)
            return self.answers.pop(0)
        return {}


def save_to(tmp_path: Path, answers: list[dict[str, Any]]) -> tuple[MemorySave, MigratingQmp]:
    path = tmp_path / "m.vmrs"
    fd = os.open(partial_path(path), os.O_WRONLY | os.O_CREAT, 0o600)
    qmp = MigratingQmp(fd, answers)
    return MemorySave(cast(Any, qmp), path, fd, background=True, started=True), qmp


def active(remaining: int) -> dict[str, Any]:
    return {"status": "active", "ram": {"remaining": remaining}}


def test_the_file_is_flushed_while_qemu_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls_at_flush: list[int] = []
    save, qmp = save_to(
        tmp_path, [active(4 * MIB), active(2 * MIB), active(0), {"status": "completed"}]
    )
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        polls_at_flush.append(len(qmp.sent))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    asyncio.run(save.finish())
    assert polls_at_flush and polls_at_flush[0] < qmp.sent.count("query-migrate")
    assert save.path.stat().st_size == 4 * 4096
    assert not partial_path(save.path).exists()
    assert qmp.sent[-1] == "migrate-set-capabilities"  # background-snapshot off again


def test_a_failed_migration_leaves_no_file(tmp_path: Path) -> None:
    save, qmp = save_to(tmp_path, [active(MIB), {"status": "failed", "error-desc": "EIO"}])
    with pytest.raises(QmpError, match="EIO"):
        asyncio.run(save.finish())
    assert not partial_path(save.path).exists()
    assert not save.path.exists()
    assert qmp.sent[-1] == "migrate-set-capabilities"


def test_completion_is_polled_when_it_is_due() -> None:
    assert poll_delay(None, 0.0, 100 * MIB) == FINISH_POLL_S  # no rate yet
    assert poll_delay((0.0, 100 * MIB), 0.02, 100 * MIB) == FINISH_POLL_S  # no progress
    assert poll_delay((0.0, 100 * MIB), 0.02, 50 * MIB) == FINISH_POLL_S  # far off
    assert poll_delay((0.0, 20 * MIB), 0.02, 5 * MIB) == pytest.approx(5 * MIB / (750 * MIB))
    assert poll_delay((0.0, 20 * MIB), 0.02, 1024) == POLL_S  # any moment now
    assert poll_delay((0.0, MIB), 0.02, 0) == POLL_S  # the end of the stream


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

    async def prepare(qmp: Any, memory: Path, background: bool) -> MemorySave:
        fd = os.open(partial_path(memory), os.O_WRONLY | os.O_CREAT, 0o600)
        return MemorySave(qmp, memory, fd, background)

    async def no_children(provider: Any, children: Any) -> SwappedDisks:
        raise StorageError("disk full")

    monkeypatch.setattr(checkpoint_ops, "prepare_memory_save", prepare)
    monkeypatch.setattr(checkpoint_ops, "make_children", no_children)
    ops = CheckpointOps(cast(Any, SimpleNamespace(disks=None)))
    with pytest.raises(StorageError, match="disk full"):
        asyncio.run(ops._prepare(cast(Any, qmp), {}, path, True))
    assert ("closefd", {"fdname": memory_save.FD_NAME}) in qmp.sent
    assert ("migrate-set-capabilities", capability(False)) in qmp.sent
    assert not partial_path(path).exists()


def test_a_memory_save_that_fails_undoes_the_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = UndoneDisks(cast(Any, None))

    async def refused(qmp: Any, memory: Path, background: bool) -> MemorySave:
        raise QmpError("no userfaultfd")

    async def children(provider: Any, children: Any) -> SwappedDisks:
        return made

    monkeypatch.setattr(checkpoint_ops, "prepare_memory_save", refused)
    monkeypatch.setattr(checkpoint_ops, "make_children", children)
    ops = CheckpointOps(cast(Any, SimpleNamespace(disks=None)))
    with pytest.raises(QmpError, match="userfaultfd"):
        asyncio.run(ops._prepare(cast(Any, RecordingQmp()), {}, tmp_path / "m.vmrs", True))
    assert made.undone
