"""Applying a checkpoint's memory inside the running worker: a new QEMU, the same worker."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from test_worker_lifecycle import boot

from pyhv.errors import NotFoundError, PyhvError
from pyhv.model import VmState
from pyhv.paths import HomePaths
from pyhv.worker import checkpoint_ops
from pyhv.worker.checkpoint_apply import SPARE_PREFIX, guest_ram_fd
from pyhv.worker.checkpoint_ops import CheckpointOps
from pyhv.worker.qemu_argv import MEMFD_NAME
from pyhv.worker.status_file import read_status_file


def memory_file(paths: HomePaths) -> str:
    path = paths.home / "c1.vmrs"
    path.write_bytes(b"memory")
    return str(path)


@pytest.mark.parametrize("paused", [False, True])
def test_a_new_qemu_runs_from_the_memory_and_the_worker_follows_it(
    paths: HomePaths, paused: bool
) -> None:
    async def go() -> None:
        b = await boot(paths)
        old = b.runner.proc
        assert old is not None
        b.qmp.commands.clear()
        args = {"apply_id": "a1", "disks": {}, "memory_path": memory_file(paths), "paused": paused}
        await CheckpointOps(b.worker).checkpoint_apply(args)
        assert (await old.wait()).returncode == -9  # the old QEMU is gone, the worker is not
        assert not b.task.done() and b.runner.proc is not old
        assert b.runner.argv[-3:] == ["-S", "-incoming", "defer"]
        commands = b.qmp.commands
        assert commands.index("stop") < commands.index("migrate-incoming")
        assert ("cont" in commands) is not paused
        status = b.worker.status
        assert status.state == (VmState.PAUSED if paused else VmState.RUNNING)
        assert b.runner.proc is not None
        assert status.qemu_pid == b.runner.proc.pid and b.worker.sampler is not None
        await b.ops.turn_off({})  # the worker now waits for the new QEMU
        await b.task
        assert b.worker.status.state == VmState.OFF and not b.worker.status.critical

    asyncio.run(go())


@pytest.mark.parametrize("right_size", [True, False])
def test_the_new_qemu_maps_the_old_ones_guest_memory(paths: HomePaths, right_size: bool) -> None:
    """This process stands in for the old QEMU: it holds a memfd named like QEMU's."""

    async def go() -> None:
        b = await boot(paths)
        assert b.runner.proc is not None
        b.runner.proc.pid = os.getpid()
        ram = os.memfd_create(MEMFD_NAME)
        try:
            size = b.worker.config.memory_startup_mib << 20
            os.ftruncate(ram, size if right_size else size // 2)
            assert guest_ram_fd(os.getpid()) == Path(f"/proc/{os.getpid()}/fd/{ram}")
            args = {"disks": {}, "memory_path": memory_file(paths)}
            await CheckpointOps(b.worker).checkpoint_apply(args)
        finally:
            os.close(ram)
        backend = next(a for a in b.runner.argv if a.startswith("memory-backend-"))
        mapped = re.fullmatch(r"memory-backend-file,.*,mem-path=/proc/(\d+)/fd/(\d+)", backend)
        if not right_size:
            assert mapped is None and backend.startswith("memory-backend-memfd,")
        else:
            assert mapped is not None and int(mapped[1]) == os.getpid()
        assert guest_ram_fd(os.getpid()) is None  # the worker let go of it once QEMU had it
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_without_the_old_qemus_memory_the_new_one_gets_fresh_memory(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)  # the fake QEMU's pid is no process
        await CheckpointOps(b.worker).checkpoint_apply(
            {"disks": {}, "memory_path": memory_file(paths)}
        )
        assert any(a.startswith("memory-backend-memfd,") for a in b.runner.argv)
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_a_missing_memory_file_is_refused_and_the_vm_runs_on(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        args = {"disks": {}, "memory_path": str(paths.home / "gone.vmrs")}
        with pytest.raises(NotFoundError, match=r"memory file .*gone\.vmrs is missing"):
            await CheckpointOps(b.worker).checkpoint_apply(args)
        assert b.worker.status.state == VmState.RUNNING and "stop" not in b.qmp.commands
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_a_memory_that_does_not_load_ends_the_vm_off(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths, restore_fails=True)
        args = {"disks": {}, "memory_path": memory_file(paths)}
        with pytest.raises(PyhvError, match=r"loading c1\.vmrs failed"):
            await CheckpointOps(b.worker).checkpoint_apply(args)
        await b.task
        status = read_status_file(paths.vm_status(b.worker.config.id))
        assert status is not None and status.state == VmState.OFF and status.critical
        assert "applying the checkpoint failed" in (status.reason or "")

    asyncio.run(go())


def test_asked_again_once_done_it_answers_at_once(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        ops = CheckpointOps(b.worker)
        args = {"apply_id": "a1", "disks": {}, "memory_path": memory_file(paths)}
        await ops.checkpoint_apply(args)
        spawned = b.runner.proc
        assert await ops.checkpoint_apply(args) == {"total_ms": 0.0}
        assert b.runner.proc is spawned
        await ops.checkpoint_apply({**args, "apply_id": "a2"})  # the same checkpoint again
        assert b.runner.proc is not spawned
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_only_a_live_vm_takes_a_checkpoint(paths: HomePaths, tmp_path: Path) -> None:
    async def go() -> None:
        b = await boot(paths)
        await b.ops.turn_off({})
        await b.task
        args = {"disks": {"0:0": str(tmp_path / "x.avhdx")}, "memory_path": memory_file(paths)}
        with pytest.raises(PyhvError, match="cannot apply a checkpoint to"):
            await CheckpointOps(b.worker).checkpoint_apply(args)

    asyncio.run(go())


def test_a_spare_started_ahead_takes_the_apply(paths: HomePaths) -> None:
    """The QEMU is started ahead, on sockets of its own, and takes the usual names once the
    old one is killed; the old guest, about to be discarded, stops meanwhile."""

    async def go() -> None:
        b = await boot(paths)
        old = b.runner.proc
        assert old is not None
        ops = CheckpointOps(b.worker)
        assert await ops.checkpoint_apply_prepare({"apply_id": "a1"}) == {"prepared": True}
        spare, run = b.runner.proc, b.worker.layout.run_dir
        assert spare is not None and spare is not old and b.worker.proc is old
        assert b.qmp.commands[-1] == "stop" and b.qmp.status == "paused"
        assert any(f"path={run / SPARE_PREFIX}qmp.sock," in a for a in b.runner.argv)
        (run / f"{SPARE_PREFIX}qmp.sock").write_text("the spare's")  # as QEMU binds it
        args = {"apply_id": "a1", "disks": {}, "memory_path": memory_file(paths)}
        await ops.checkpoint_apply(args)
        assert b.runner.proc is spare and b.worker.proc is spare  # no other QEMU started
        assert (await old.wait()).returncode == -9
        assert (run / "qmp.sock").read_text() == "the spare's"
        assert not list(run.glob(f"{SPARE_PREFIX}*"))
        await b.ops.turn_off({})
        await b.task
        assert b.worker.status.state == VmState.OFF and not b.worker.status.critical

    asyncio.run(go())


def test_a_spare_not_taken_is_killed(paths: HomePaths, monkeypatch: pytest.MonkeyPatch) -> None:
    """One for another apply is killed when that apply comes; one no apply comes for, soon."""
    monkeypatch.setattr(checkpoint_ops, "SPARE_TIMEOUT_S", 0.05)

    async def go() -> None:
        b = await boot(paths)
        ops = CheckpointOps(b.worker)
        await ops.checkpoint_apply_prepare({"apply_id": "a1"})
        other = b.runner.proc
        assert other is not None
        args = {"apply_id": "a2", "disks": {}, "memory_path": memory_file(paths)}
        await ops.checkpoint_apply(args)
        assert (await other.wait()).returncode == -9
        live = b.runner.proc
        assert b.worker.proc is live and live is not other
        await ops.checkpoint_apply_prepare({"apply_id": "a3"})
        assert b.qmp.status == "paused"  # stopped for the spare ...
        unclaimed = b.runner.proc
        assert unclaimed is not None
        assert (await unclaimed.wait()).returncode == -9
        assert not list(b.worker.layout.run_dir.glob(f"{SPARE_PREFIX}*"))
        assert b.worker.status.state == VmState.RUNNING and b.worker.proc is live
        async with asyncio.timeout(5):
            while b.qmp.status != "running":  # ... and running on without it
                await asyncio.sleep(0.01)
        b.runner.proc = live  # the fake QMP ends the runner's last QEMU at turn_off
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_a_vm_turned_off_with_a_spare_leaves_no_spare_socket(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        live = b.runner.proc
        ops = CheckpointOps(b.worker)
        await ops.checkpoint_apply_prepare({"apply_id": "a1"})
        run = b.worker.layout.run_dir
        (run / f"{SPARE_PREFIX}qmp.sock").write_text("the spare's")  # as QEMU binds it
        b.runner.proc = live  # the fake QMP ends the runner's last QEMU at turn_off
        await b.ops.turn_off({})
        await b.task
        assert not run.exists() or not list(run.glob(f"{SPARE_PREFIX}*"))

    asyncio.run(go())


def test_a_spare_replaced_by_another_keeps_the_guest_stopped(paths: HomePaths) -> None:
    """A caller that prepares again (a retry) gets a new spare; the guest stays stopped for it."""

    async def go() -> None:
        b = await boot(paths)
        live = b.runner.proc
        ops = CheckpointOps(b.worker)
        await ops.checkpoint_apply_prepare({"apply_id": "a1"})
        await ops.checkpoint_apply_prepare({"apply_id": "a2"})
        await asyncio.sleep(0.05)  # a resume of the first spare's hold would have come by now
        assert b.qmp.status == "paused"
        b.runner.proc = live  # the fake QMP ends the runner's last QEMU at turn_off
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())
