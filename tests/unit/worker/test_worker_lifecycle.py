"""The worker's state handling end to end, with a fake QEMU process and a fake QMP session."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyhv.errors import PyhvError, QmpError, StateError
from pyhv.inventory import Inventory
from pyhv.model import ComPort, VmConfig, VmState
from pyhv.paths import HomePaths
from pyhv.worker.ops import WorkerOps
from pyhv.worker.process import ExitInfo
from pyhv.worker.qmp import QmpEvent
from pyhv.worker.status_file import read_status_file
from pyhv.worker.worker import Worker, WorkerEnv


class FakeProcess:
    def __init__(self) -> None:
        self.pid = 999_999_999
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    def exit(self, returncode: int) -> None:
        if not self._exit.done():
            self._exit.set_result(ExitInfo(returncode))

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        self.exit(-9)


class FakeRunner:
    def __init__(self) -> None:
        self.argv: list[str] = []
        self.proc: FakeProcess | None = None

    async def spawn(self, argv: Sequence[str], log_path: Path) -> FakeProcess:
        self.argv = list(argv)
        self.proc = FakeProcess()
        return self.proc


class Listeners:
    """Event queues handed out like ``QmpSession.listen``; :meth:`emit` feeds them all."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[QmpEvent]] = []

    def emit(self, event: QmpEvent) -> None:
        for queue in self.queues:
            queue.put_nowait(event)

    @contextlib.contextmanager
    def listen(self, *names: str) -> Iterator[asyncio.Queue[QmpEvent]]:
        queue: asyncio.Queue[QmpEvent] = asyncio.Queue()
        self.queues.append(queue)
        try:
            yield queue
        finally:
            self.queues.remove(queue)


class FakeQmp(Listeners):
    """Answers like QEMU 7.2 for the commands the worker sends; quitting ends the process."""

    def __init__(
        self, runner: FakeRunner, *, guest_powers_off: bool = True, restore_fails: bool = False
    ) -> None:
        self.runner = runner
        self.guest_powers_off = guest_powers_off
        self.restore_fails = restore_fails
        self.commands: list[str] = []
        self.status = "prelaunch"
        self._events: asyncio.Queue[QmpEvent] = asyncio.Queue()
        super().__init__()

    def _shutdown(self, reason: str) -> None:
        self._events.put_nowait(
            QmpEvent("SHUTDOWN", {"guest": reason.startswith("guest"), "reason": reason})
        )
        assert self.runner.proc is not None
        asyncio.get_running_loop().call_later(0.01, self.runner.proc.exit, 0)

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.commands.append(cmd)
        if cmd == "cont":
            self.status = "running"
        elif cmd == "stop":
            self.status = "paused"
        elif cmd == "quit":
            self._shutdown("host-qmp-quit")
        elif cmd == "system_powerdown" and self.guest_powers_off:
            self._shutdown("guest-shutdown")
        elif cmd == "query-status":
            return {"status": self.status, "running": self.status == "running"}
        elif cmd == "migrate-incoming" and self.restore_fails:
            self.status = "shutdown"  # what QEMU 7.2 reports after a bad stream
        elif cmd == "migrate-incoming":
            self.status = "paused"
            self.emit(QmpEvent("MIGRATION", {"status": "completed"}))
        elif cmd == "query-migrate":
            return {"status": "completed"}
        return {}

    def send_fd(self, fd: int) -> None:
        pass

    async def events(self) -> AsyncIterator[QmpEvent]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        pass


@dataclass
class Booted:
    worker: Worker
    ops: WorkerOps
    qmp: FakeQmp
    runner: FakeRunner
    task: asyncio.Task[int]


def make_config(paths: HomePaths) -> VmConfig:
    config = VmConfig(name="fake", com1=ComPort(mode="none"))
    return Inventory(paths).create(config)


async def boot(paths: HomePaths, *, restore: bool = False, **qmp_options: bool) -> Booted:
    runner = FakeRunner()
    qmp = FakeQmp(runner, **qmp_options)

    async def connect(path: str, name: str, timeout: float) -> FakeQmp:
        return qmp

    config = Inventory(paths).get("fake") if restore else make_config(paths)
    worker = Worker(config, paths, "tcg", WorkerEnv(runner=runner, connect_qmp=connect))
    task = asyncio.create_task(worker.run(restore=restore))
    for _ in range(200):
        if worker.status.state in (VmState.RUNNING, VmState.PAUSED) or task.done():
            break
        await asyncio.sleep(0.01)
    return Booted(worker, WorkerOps(worker), qmp, runner, task)


def test_boot_starts_paused_then_continues(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        assert b.worker.status.state == VmState.RUNNING
        assert "-S" in b.runner.argv
        assert b.qmp.commands[0] == "cont"
        recorded = read_status_file(paths.vm_status(b.worker.config.id))
        assert recorded is not None and recorded.state == VmState.RUNNING
        assert recorded.qemu_pid == b.runner.proc.pid  # type: ignore[union-attr]
        await b.ops.turn_off({})
        assert await asyncio.wait_for(b.task, 5) == 0

    asyncio.run(go())


def test_pause_resume_and_illegal_requests(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        with pytest.raises(StateError, match="cannot resume VM 'fake': it is already Running"):
            await b.ops.resume({})
        await b.ops.pause({})
        assert b.worker.status.state == VmState.PAUSED
        with pytest.raises(StateError, match="Paused"):
            await b.ops.shutdown({})
        await b.ops.resume({})
        assert b.qmp.commands[-2:] == ["stop", "cont"]
        await b.ops.turn_off({})
        await b.task
        assert b.worker.status.state == VmState.OFF
        assert b.worker.status.reason == "turned off"
        assert not b.worker.status.critical

    asyncio.run(go())


def test_acpi_shutdown_ends_off_with_reason(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        status = await b.ops.shutdown({"timeout": 5})
        assert status["state"] == "Off"
        assert status["reason"] == "guest shut down"
        await b.task
        assert not any(p.exists() for p in b.worker.layout.sockets())
        assert not b.worker.layout.worker_pid.exists()

    asyncio.run(go())


def test_shutdown_turns_off_when_guest_ignores_button(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths, guest_powers_off=False)
        status = await b.ops.shutdown({"timeout": 0.05})
        assert b.qmp.commands[-2:] == ["system_powerdown", "quit"]
        assert status["reason"] == "turned off"
        await b.task

    asyncio.run(go())


def test_qemu_killed_is_critical(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        assert b.runner.proc is not None
        b.runner.proc.kill()
        await b.task
        assert b.worker.status.state == VmState.OFF
        assert b.worker.status.critical
        assert b.worker.status.reason == "QEMU was killed by signal 9 (SIGKILL)"

    asyncio.run(go())


def test_exec_refused_while_paused(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        await b.ops.pause({})
        with pytest.raises(StateError, match="it is Paused"):
            await b.ops.exec({"argv": ["true"]})
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_messages_use_the_name_the_service_gave_at_rename(paths: HomePaths) -> None:
    """After a rename of the running VM the worker still said "VM 'fake' has no working guest
    agent" and "cannot pause VM 'fake'"."""

    async def go() -> None:
        b = await boot(paths)
        await b.ops.rename({"name": "www"})
        with pytest.raises(StateError, match=r"^VM 'www' has no working guest agent"):
            await b.ops.exec({"argv": ["true"], "timeout": 1})
        await b.ops.pause({})
        with pytest.raises(StateError, match=r"^cannot pause VM 'www': it is already Paused"):
            await b.ops.pause({})
        await b.ops.turn_off({})
        await b.task

    asyncio.run(go())


def test_save_writes_state_file_and_ends_saved(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        status = await b.ops.save({})
        await b.task
        assert status["state"] == "Saved"
        assert b.qmp.commands[-5:] == ["stop", "getfd", "migrate", "query-migrate", "quit"]
        assert paths.vm_saved_state(b.worker.config.id).exists()
        info = paths.vm_saved_state_info(b.worker.config.id)
        assert json.loads(info.read_bytes()) == {"state": "Running"}

    asyncio.run(go())


def test_saved_while_paused_comes_back_paused(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        await b.ops.pause({})
        await b.ops.save({})
        await b.task
        again = await boot(paths, restore=True)
        assert again.worker.status.state == VmState.PAUSED
        assert "cont" not in again.qmp.commands
        assert not paths.vm_saved_state(again.worker.config.id).exists()
        assert not paths.vm_saved_state_info(again.worker.config.id).exists()
        await again.ops.resume({})
        await again.ops.turn_off({})
        await again.task

    asyncio.run(go())


def test_failed_restore_keeps_the_saved_state(paths: HomePaths) -> None:
    async def go() -> None:
        b = await boot(paths)
        await b.ops.save({})
        await b.task
        again = await boot(paths, restore=True, restore_fails=True)
        with pytest.raises(PyhvError, match="the saved state is kept"):
            await again.task
        status = read_status_file(paths.vm_status(again.worker.config.id))
        assert status is not None and status.display_state == "Saved-Critical"
        assert paths.vm_saved_state(again.worker.config.id).exists()

    asyncio.run(go())


class OutOfPagesRunner(FakeRunner):
    """Its first QEMU dies as QEMU 7.2 does when the kernel has no huge pages left for the
    guest's RAM; the next ones start."""

    def __init__(self) -> None:
        super().__init__()
        self.argvs: list[list[str]] = []

    async def spawn(self, argv: Sequence[str], log_path: Path) -> FakeProcess:
        proc = await super().spawn(argv, log_path)
        self.argvs.append(list(argv))
        if len(self.argvs) == 1:
            log_path.write_text(
                "qemu-system-x86_64: unable to map backing store for guest RAM: "
                "Cannot allocate memory\n"
            )
            proc.exit(1)
        return proc


@pytest.mark.parametrize("required", [False, True])
def test_a_start_the_huge_pages_ran_out_for_goes_on_4k_pages_unless_they_are_required(
    paths: HomePaths, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    """Another VM may take the pages between the worker's count and QEMU's mmap."""
    monkeypatch.setattr("pyhv.worker.worker.large_pages", lambda name, mib, req: True)

    async def go() -> None:
        runner = OutOfPagesRunner()
        qmp = FakeQmp(runner)

        async def connect(path: str, name: str, timeout: float) -> FakeQmp:
            if len(runner.argvs) == 1:
                await asyncio.sleep(3600)  # the dead QEMU never answers
            return qmp

        config = Inventory(paths).create(
            VmConfig(name="fake", com1=ComPort(mode="none"), memory_hugepages=required)
        )
        worker = Worker(config, paths, "tcg", WorkerEnv(runner=runner, connect_qmp=connect))
        if required:
            with pytest.raises(PyhvError, match="unable to map backing store for guest RAM"):
                await worker.run(restore=False)
            assert len(runner.argvs) == 1 and worker.status.state == VmState.OFF
            return
        task = asyncio.create_task(worker.run(restore=False))
        while worker.status.state != VmState.RUNNING:
            await asyncio.sleep(0.01)
        memory = [a for argv in runner.argvs for a in argv if a.startswith("memory-backend")]
        assert "hugetlb=on" in memory[0] and "hugetlb" not in memory[1]
        assert worker.status.large_pages is False
        await WorkerOps(worker).turn_off({})
        await asyncio.wait_for(task, 5)
        assert worker.status.large_pages is None

    asyncio.run(go())


class ExitsAtStartRunner(FakeRunner):
    """QEMU that gives up on a bad option: it writes why, closes its monitor, then exits."""

    async def spawn(self, argv: Sequence[str], log_path: Path) -> FakeProcess:
        proc = await super().spawn(argv, log_path)
        log_path.write_text("qemu: could not open kernel file '/gone/vmlinuz'\n")
        asyncio.get_running_loop().call_later(0.1, proc.exit, 1)
        return proc


def test_qemu_exiting_at_start_is_reported_with_its_words(paths: HomePaths) -> None:
    """The monitor broke off a moment before QEMU's exit was seen, and the user read
    "QEMU's monitor did not answer within 30 s" instead of QEMU's own line."""

    async def go() -> None:
        runner = ExitsAtStartRunner()

        async def connect(path: str, name: str, timeout: float) -> FakeQmp:
            raise QmpError("QEMU's monitor broke off the connection: EOFError")

        worker = Worker(
            make_config(paths), paths, "tcg", WorkerEnv(runner=runner, connect_qmp=connect)
        )
        with pytest.raises(PyhvError, match=r"^QEMU failed to start: qemu: could not open kernel"):
            await worker.run(restore=False)
        assert worker.status.state == VmState.OFF

    asyncio.run(go())
