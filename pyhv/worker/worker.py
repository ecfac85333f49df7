"""One VM's worker: starts QEMU with the VM's disks, console and agent, carries out state
changes, keeps ``status.json`` true, and cleans up everything when QEMU ends.

Lifecycle: ``run()`` boots (or restores) and serves the control socket until QEMU exits, for
whatever reason; then it closes the disks, writes the final status, removes its sockets and
returns. State changes go through :mod:`pyhv.worker.states`, checked and recorded before the
first ``await`` so two requests can never both pass the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyhv.errors import PyhvError, QmpError, StateError
from pyhv.host.hugepages import large_pages, out_of_huge_pages
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.paths import HomePaths, RuntimeLayout
from pyhv.saved_state_file import saved_paused
from pyhv.worker import qmp as q
from pyhv.worker.agent import GuestAgent
from pyhv.worker.checkpoint_apply import SPARE_PREFIX
from pyhv.worker.console import Console
from pyhv.worker.control import ControlServer
from pyhv.worker.disks import DiskProvider
from pyhv.worker.firmware import firmware_for
from pyhv.worker.memory_load import load_memory
from pyhv.worker.ops import WorkerOps
from pyhv.worker.outcome import ExitFacts, exit_outcome, restore_failed
from pyhv.worker.process import ExitInfo, ProcessRunner, QemuRunner, RunningProcess, tail_line
from pyhv.worker.qemu_argv import build_qemu_argv
from pyhv.worker.states import Action, Event, next_status
from pyhv.worker.stats import StatsSampler
from pyhv.worker.status_file import current_status, write_status

QMP_CONNECT_TIMEOUT_S = 30.0
RESTORE_TIMEOUT_S = 120.0
EXIT_AFTER_MONITOR_S = 2.0


@dataclass
class WorkerEnv:
    """The worker's I/O seams; tests replace the runner and the QMP connector."""

    runner: ProcessRunner = field(default_factory=QemuRunner)
    connect_qmp: Callable[[str, str, float], Awaitable[q.Qmp]] = q.QmpSession.connect
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class Worker:
    def __init__(self, config: VmConfig, paths: HomePaths, accel: str, env: WorkerEnv) -> None:
        self.config = config
        self.paths = paths
        self.accel = accel
        self.env = env
        self.log = logging.getLogger(f"pyhv.worker.{config.id}")
        self.layout: RuntimeLayout = paths.runtime(config.id)
        self.status = current_status(paths, config.id)
        self.console = Console(paths.vm_console_log(config.id))
        self.agent = GuestAgent(str(self.layout.qga), config.name)
        self.disks = DiskProvider(self.layout.nbd)
        self.facts = ExitFacts()
        self.exited = asyncio.Event()
        self.proc: RunningProcess | None = None
        self.qmp: q.Qmp | None = None
        self.sampler: StatsSampler | None = None
        self._events: asyncio.Task[None] | None = None
        self._deleted: dict[str, asyncio.Future[None]] = {}
        # Set while a checkpoint applied replaces QEMU (pyhv.worker.checkpoint_apply).
        self.replacing: asyncio.Event | None = None

    # -- status ----------------------------------------------------------------------------
    def record(self, action: Action | Event, reason: str | None = None, **update: Any) -> None:
        """Check and record a state change; raises StateError before anything happened."""
        status = next_status(
            self.status, action, vm_name=self.config.name, now=self.env.now(), reason=reason
        )
        self.set_status(status.model_copy(update=update))

    def set_status(self, status: VmStatus) -> None:
        if status.state != self.status.state:
            self.log.info("state %s (%s)", status.display_state, status.reason or "")
        self.status = status
        write_status(self.paths.vm_status(self.config.id), status)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, *, restore: bool) -> int:
        """Boot, serve until QEMU exits, clean up. Returns the process exit code."""
        if restore and self.status.state != VmState.SAVED:
            raise StateError(f"VM '{self.config.name}' has no saved state to restore")
        self.record(
            Action.START if not restore else Action.RESTORE,
            worker_pid=os.getpid(),
            qemu_pid=None,
            large_pages=None,
        )
        self.facts.restoring = restore
        control = ControlServer(*WorkerOps(self).tables())
        try:
            self._prepare_dirs()
            await self._boot(restore)
            await control.start(self.layout.control)
        except BaseException as e:
            self.facts.start_error = str(e) if isinstance(e, PyhvError) else repr(e)
            info = ExitInfo(1)
            if self.proc is not None:
                self.proc.kill()
                info = await self.proc.wait()
            await self._finish(info)
            await control.close()
            if self.facts.restoring and isinstance(e, PyhvError):
                raise PyhvError(restore_failed(str(e))) from e
            raise
        info = await self._wait_qemu()
        await self._finish(info)
        await control.close()
        return 0

    async def _wait_qemu(self) -> ExitInfo:
        """Until QEMU exits for good: a QEMU that a checkpoint applied replaced on purpose
        is followed by its successor."""
        while True:
            proc = self.proc
            assert proc is not None
            info = await proc.wait()
            if self.replacing is not None:
                await self.replacing.wait()
            if self.proc is proc:
                return info

    def _prepare_dirs(self) -> None:
        self.layout.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sock in self.layout.sockets():
            sock.unlink(missing_ok=True)
        self.paths.vm_log_dir(self.config.id).mkdir(parents=True, exist_ok=True)
        self.layout.worker_pid.write_text(f"{os.getpid()}\n")

    async def _boot(self, restore: bool) -> None:
        config = self.config
        large = large_pages(config.name, config.memory_startup_mib, config.memory_hugepages)
        wirings = await self.disks.start(config)
        firmware = firmware_for(config.generation, self.paths.vm_efi_vars(config.id))

        def argv(large: bool) -> list[str]:
            incoming = "defer" if restore else None
            return build_qemu_argv(
                config,
                self.layout,
                self.accel,
                firmware,
                incoming=incoming,
                disks=wirings,
                start_paused=True,
                large_pages=large,
            )

        try:
            proc, self.qmp = await self._launch(argv(large), large)
        except PyhvError as e:
            if not large or config.memory_hugepages or not out_of_huge_pages(str(e)):
                raise
            # Another VM took the pages between the count and QEMU's mmap: 4 KiB it is.
            self.log.info("no 2 MiB pages left for the guest's RAM (%s): on 4 KiB pages", e)
            proc, self.qmp = await self._launch(argv(False), False)
        self._events = asyncio.create_task(self._watch_events(self.qmp), name="qmp-events")
        if self.config.com1.mode == "console":
            await self.console.open(str(self.layout.serial))
        paused = restore and await self._restore(self.qmp)
        if not paused:
            await self.qmp.execute("cont")
        self.sampler = StatsSampler(
            self.qmp, proc.pid, self.config.memory_startup_mib, self.env.monotonic
        )
        with contextlib.suppress(QmpError):
            await self.sampler.enable_guest_stats()
        self.record(Event.STARTED_PAUSED if paused else Event.STARTED)

    async def _launch(self, argv: list[str], large: bool) -> tuple[RunningProcess, q.Qmp]:
        """Start QEMU and connect to its QMP."""
        self.log.info("starting %s", " ".join(argv))
        self.proc = proc = await self.env.runner.spawn(argv, self._qemu_log())
        self.set_status(self.status.model_copy(update={"qemu_pid": proc.pid, "large_pages": large}))
        qmp = self.env.connect_qmp(str(self.layout.qmp), self.config.name, QMP_CONNECT_TIMEOUT_S)
        return proc, await self._until_exit(qmp)

    async def _until_exit(self, aw: Awaitable[q.Qmp]) -> q.Qmp:
        """Await ``aw`` unless QEMU exits first (a bad option): then fail with QEMU's words.

        A QEMU that gives up at start closes its monitor as it exits, so ``aw`` often fails a
        moment before the exit is seen: a failure waits briefly for that exit, whose words
        say more than the monitor's.
        """
        assert self.proc is not None
        work = asyncio.ensure_future(aw)
        died = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({work, died}, return_when=asyncio.FIRST_COMPLETED)
        if work in done and work.exception() is None:
            died.cancel()
            return work.result()
        if work in done:
            await asyncio.wait({died}, timeout=EXIT_AFTER_MONITOR_S)
        if not died.done():
            died.cancel()
            return work.result()
        work.cancel()
        tail = tail_line(self._qemu_log())
        raise PyhvError(f"QEMU failed to start: {tail or f'exit code {died.result().returncode}'}")

    async def _restore(self, qmp: q.Qmp) -> bool:
        """Load the saved state into the paused QEMU, then delete it; True when the VM was
        Paused when it was saved (and so stays paused)."""
        saved = self.paths.vm_saved_state(self.config.id)
        info = self.paths.vm_saved_state_info(self.config.id)
        paused = saved_paused(info)
        await load_memory(qmp, saved, RESTORE_TIMEOUT_S)
        saved.unlink()
        info.unlink(missing_ok=True)
        self.facts.restoring = False
        return paused

    def watch_events(self, qmp: q.Qmp) -> None:
        """Read the events of a new QEMU that a checkpoint applied started."""
        if self._events is not None:
            self._events.cancel()
        self._events = asyncio.create_task(self._watch_events(qmp), name="qmp-events")

    async def _watch_events(self, qmp: q.Qmp) -> None:
        with contextlib.suppress(QmpError):
            async for ev in qmp.events():
                self.log.debug("event %s %s", ev.name, ev.data)
                if ev.name == "SHUTDOWN":
                    self.facts.shutdown = ev.data
                elif ev.name == "DEVICE_DELETED":
                    fut = self._deleted.pop(str(ev.data.get("device")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

    def device_deleted(self, device_id: str) -> asyncio.Future[None]:
        """Resolves when QEMU reports the device unplugged (register before ``device_del``)."""
        fut = asyncio.get_running_loop().create_future()
        self._deleted[device_id] = fut
        return fut

    def _qemu_log(self) -> Path:
        return self.paths.vm_log_dir(self.config.id) / "qemu.log"

    async def _finish(self, info: ExitInfo) -> None:
        """QEMU is gone (or never came): release everything, then say so in status.json."""
        try:
            if self.proc is not None:
                self.proc.kill()
            self.facts.exit = info
            self.facts.qemu_tail = tail_line(self._qemu_log())
            if self._events is not None:
                self._events.cancel()
            closers = [self.agent.close(), self.console.close(), self.disks.close()]
            if self.qmp is not None:
                closers.insert(0, self.qmp.close())
            for result in await asyncio.gather(*closers, return_exceptions=True):
                if isinstance(result, Exception):
                    self.log.error("cleanup failed: %s", result)
            event, reason = exit_outcome(self.facts)
            try:
                self.record(event, reason, qemu_pid=None, large_pages=None)
            except StateError:
                self.log.exception("final state change refused")
            except OSError as e:  # PYHV_HOME vanished: nothing left to record it in
                self.log.error("final state not recorded: %s", e)
            for sock in self.layout.sockets():
                sock.unlink(missing_ok=True)
            for sock in self.layout.run_dir.glob(f"{SPARE_PREFIX}*"):  # a spare unused
                sock.unlink(missing_ok=True)
            self.layout.worker_pid.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.layout.run_dir.rmdir()
        finally:
            self.exited.set()

    def terminate(self) -> None:
        """SIGTERM/SIGINT to the worker: turn the VM off, then clean up as usual.

        QEMU is killed even when recording the state fails (e.g. PYHV_HOME vanished), so a
        signalled worker never leaves a running QEMU behind.
        """
        try:
            with contextlib.suppress(StateError):
                self.record(Action.TURN_OFF)
        finally:
            self.facts.stop_requested = True
            if self.proc is not None:
                self.proc.kill()
