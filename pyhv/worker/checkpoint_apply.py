"""Applying a checkpoint with memory to a live VM inside its worker: only QEMU is replaced.

Restarting the whole worker would reopen every image, restart the storage provider and
reconnect everything; here the worker keeps its NBD provider and its control socket, and
the new QEMU is started with the same command line (:func:`build_qemu_argv`) plus
``-incoming defer``. QEMU 7.2 loads a migration stream only into a QEMU waiting for one (no
command loads one into a running guest), so a new process it is. The order keeps the guest
from ever running on the wrong disks:

1. the new QEMU starts ahead (:func:`prepare_spare`, while the caller makes the new disks),
   on sockets of its own: it only connects to the exports and waits for the memory (and
   its QMP is connected meanwhile);
2. the old QEMU is stopped, which drains its disk I/O: every request it sent is answered,
   none waits in a socket. Applying discards its state, so it is then killed;
3. every export continues in the applied checkpoint's new child (made and journaled by the
   caller): no QEMU sends anything then;
4. the new QEMU's sockets take the usual names, and it loads the checkpoint's memory file
   and only then runs, or stays paused when the checkpoint was taken Paused. QMP, console,
   guest agent and statistics follow it.

Without a spare (none was asked for, it died, or it was for another apply) the new QEMU
starts after step 2, on the usual names (the old ones' are unlinked first, so nothing of
the worker's can reach the old QEMU by them). A generation 2 VM gets no spare: its old QEMU
must be gone before the new one starts, as it holds the lock of the EFI variable store.

The new QEMU maps the old one's guest RAM rather than a new memfd: faulting in fresh memory
while loading the stream took most of an apply (0.45-0.8 s of 0.6-0.76 s for 512 MiB here);
mapping the populated pages and loading into them takes 0.1-0.18 s. The worker opens the
old QEMU's memfd through ``/proc`` while that QEMU lives (so the memory outlives it,
generation 2 included) and hands it to the new one as a ``memory-backend-file`` of the same
id and size: the RAMBlock, so the stream, is named after the backend id, not its type. A
spare maps it while the old guest still runs: a QEMU starting with ``-incoming`` writes
nothing into guest RAM. Nothing of the old contents survives the load: a migration sends
every page of RAM that is not ``x-ignore-shared`` (never set here), and QEMU 7.2 writes a
zero page whose target is not zero already. When the memfd cannot be had (not exactly one,
another size, no access), the new QEMU gets fresh memory.

The stream loads without waiting for the old QEMU's exit (unmapping its RAM and translated
code takes it 0.1-0.2 s here): stopped, it runs no vCPU and has no disk request in flight,
the worker has closed its QMP, console and agent channels, and once killed it runs no more
code of its own; its exit only drops its mappings, the pages stay as they are. The worker
reaps it meanwhile.

Any failure kills whatever QEMU is left and the VM ends Off (``start_error`` says why): the
caller has committed the apply by then, and restores the memory by a fresh start instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyhv.errors import ConfigError, QmpError
from pyhv.host.hugepages import large_pages
from pyhv.paths import RuntimeLayout
from pyhv.storage import open_image
from pyhv.worker import qmp as q
from pyhv.worker.checkpoint_disks import DiskKey, record_paths
from pyhv.worker.disks import export_name
from pyhv.worker.firmware import Firmware, firmware_for
from pyhv.worker.memory_load import load_memory
from pyhv.worker.process import ExitInfo, RunningProcess
from pyhv.worker.qemu_argv import MEMFD_NAME, DiskWiring, build_qemu_argv
from pyhv.worker.stats import StatsSampler

if TYPE_CHECKING:
    from pyhv.worker.worker import Worker

QMP_CONNECT_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 300.0
SPARE_PREFIX = "next-"  # of a spare QEMU's socket names until it takes over
#: QMP sessions of discarded spares being closed (kept so the tasks are not collected).
_closing: set[asyncio.Future[None]] = set()


class SpareLayout(RuntimeLayout):
    """A spare QEMU's QMP, serial and agent sockets, beside the old QEMU's under other
    names; the storage provider it connects to is the worker's."""

    @property
    def qmp(self) -> Path:
        return self.run_dir / f"{SPARE_PREFIX}{super().qmp.name}"

    @property
    def serial(self) -> Path:
        return self.run_dir / f"{SPARE_PREFIX}{super().serial.name}"

    @property
    def qga(self) -> Path:
        return self.run_dir / f"{SPARE_PREFIX}{super().qga.name}"


@dataclass
class Spare:
    """A new QEMU waiting for an apply's memory, its sockets in ``layout``; its QMP is
    connected meanwhile (``qmp``), which takes longer than anything else before the load."""

    apply_id: str
    proc: RunningProcess
    ram: int | None  # the worker's fd of the guest RAM it maps, kept until it answers QMP
    large_pages: bool | None  # fresh RAM on 2 MiB pages; None: the old RAM, pages as they were
    layout: RuntimeLayout
    exit: asyncio.Future[ExitInfo]
    qmp: asyncio.Future[q.Qmp]

    @classmethod
    async def start(
        cls, w: Worker, apply_id: str, layout: RuntimeLayout, firmware: Firmware, ram: int | None
    ) -> Spare:
        """A QEMU waiting for the memory on ``layout``'s sockets, on ``ram`` (the worker's fd,
        closed if it cannot start) if given, else on fresh RAM."""
        large: bool | None = None
        try:
            if ram is None:
                c = w.config
                large = large_pages(c.name, c.memory_startup_mib, c.memory_hugepages)
            proc = await _spawn(w, layout, firmware, ram, bool(large))
        except BaseException:
            if ram is not None:
                os.close(ram)
            raise
        connect = w.env.connect_qmp(str(layout.qmp), w.config.name, QMP_CONNECT_TIMEOUT_S)
        return cls(
            apply_id,
            proc,
            ram,
            large,
            layout,
            asyncio.ensure_future(proc.wait()),
            asyncio.ensure_future(connect),
        )

    async def connected(self) -> q.Qmp:
        """Its QMP session, once it answers.

        :raises QmpError: it exited first, or never answered.
        """
        pending: set[asyncio.Future[Any]] = {self.qmp, self.exit}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not self.qmp.done():
            raise QmpError("the new QEMU exited before it answered (see qemu.log)")
        return self.qmp.result()

    def discard(self) -> None:
        self.proc.kill()
        self.release()
        if not self.qmp.done():
            self.qmp.cancel()
        elif not self.qmp.cancelled() and self.qmp.exception() is None:
            _closing.add(asyncio.ensure_future(self.qmp.result().close()))
            _closing.difference_update({t for t in _closing if t.done()})

    def release(self) -> None:
        """Let go of its RAM fd and of its own socket names (QEMU has opened the one, and
        its sockets have the usual names now, or QEMU is gone)."""
        if self.ram is not None:
            os.close(self.ram)
            self.ram = None
        self.exit.cancel()
        if isinstance(self.layout, SpareLayout):
            _remove_sockets(self.layout)


async def prepare_spare(w: Worker, apply_id: str) -> Spare | None:
    """Start the QEMU of the apply ``apply_id`` while the old one runs (see the module
    docstring); None for a generation 2 VM, or when its socket paths would be too long."""
    firmware = _firmware(w)
    if firmware.vars is not None:
        return None
    layout = SpareLayout(w.layout.run_dir)
    try:
        layout.checked()
    except ConfigError:
        return None
    _remove_sockets(layout)
    try:
        return await Spare.start(w, apply_id, layout, firmware, _open_guest_ram(w))
    except BaseException:
        _remove_sockets(layout)
        raise


async def replace_qemu(
    w: Worker, disks: dict[DiskKey, Path], memory: Path, paused: bool, spare: Spare | None
) -> None:
    """Run the VM from ``memory`` on ``disks`` in ``spare`` or a new QEMU (see the module
    docstring); ``spare`` is this function's to use or discard.

    :raises PyhvError: the VM could not be brought back; it is ending Off.
    """
    done = asyncio.Event()
    w.replacing = done
    try:
        await _stop_qemu(w)
        old = w.proc
        assert old is not None
        if spare is None:
            spare = await _start_qemu(w)
        else:
            old.kill()
        w.proc = spare.proc
        update: dict[str, Any] = {"qemu_pid": w.proc.pid}
        if spare.large_pages is not None:
            update["large_pages"] = spare.large_pages
        w.set_status(w.status.model_copy(update=update))
        await _serve(w, disks)
        await _run_from(w, memory, paused, spare)
    except BaseException as e:
        w.facts.start_error = f"applying the checkpoint failed: {e}"
        if spare is not None:
            spare.proc.kill()
        if w.proc is not None:
            w.proc.kill()
        raise
    finally:
        if spare is not None:
            spare.release()
        w.replacing = None
        done.set()


def guest_ram_fd(pid: int) -> Path | None:
    """``/proc/<pid>/fd/<n>`` of QEMU ``pid``'s guest RAM memfd; None unless exactly one."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(entry) == f"/memfd:{MEMFD_NAME} (deleted)":
                    found.append(entry)
    return found[0] if len(found) == 1 else None


def _open_guest_ram(w: Worker) -> int | None:
    """The old QEMU's guest RAM, opened by the worker (see the module docstring); None when
    the new QEMU is to get fresh memory."""
    assert w.proc is not None
    path = guest_ram_fd(w.proc.pid)
    if path is None:
        w.log.info("QEMU %d's guest memory not found: the new QEMU gets fresh memory", w.proc.pid)
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        w.log.info("cannot open %s (%s): the new QEMU gets fresh memory", path, e)
        return None
    if os.fstat(fd).st_size != w.config.memory_startup_mib << 20:
        w.log.info("%s is not the guest's size: the new QEMU gets fresh memory", path)
        os.close(fd)
        return None
    return fd


def _qemu_sockets(layout: RuntimeLayout) -> tuple[Path, Path, Path]:
    """QEMU's own sockets (the control socket and the storage provider's are the worker's)."""
    return layout.qmp, layout.serial, layout.qga


def _remove_sockets(layout: RuntimeLayout) -> None:
    for path in _qemu_sockets(layout):
        path.unlink(missing_ok=True)


def _firmware(w: Worker) -> Firmware:
    return firmware_for(w.config.generation, w.paths.vm_efi_vars(w.config.id))


async def _spawn(
    w: Worker, layout: RuntimeLayout, firmware: Firmware, ram: int | None, large: bool
) -> RunningProcess:
    wirings = [
        DiskWiring(c, d.slot, export_name(c, d.slot), d.read_only) for c, d in w.config.disks()
    ]
    argv = build_qemu_argv(
        w.config,
        layout,
        w.accel,
        firmware,
        incoming="defer",
        disks=wirings,
        start_paused=True,
        memory_file=None if ram is None else f"/proc/{os.getpid()}/fd/{ram}",
        large_pages=large,
    )
    return await w.env.runner.spawn(argv, w.paths.vm_log_dir(w.config.id) / "qemu.log")


async def _stop_qemu(w: Worker) -> None:
    """Stop the old QEMU and let go of its QMP, console and agent channels."""
    qmp = w.qmp
    assert qmp is not None
    await qmp.execute("stop")
    w.qmp = None
    w.sampler = None
    await qmp.close()
    await w.console.detach()
    await w.agent.close()


async def _start_qemu(w: Worker) -> Spare:
    """Kill the old QEMU (a generation 2 VM's must be gone first) and start the new one on
    the usual socket names, mapping the old one's RAM when it can be had."""
    old = w.proc
    assert old is not None
    ram = _open_guest_ram(w)
    old.kill()
    firmware = _firmware(w)
    if firmware.vars is not None:
        await old.wait()
    _remove_sockets(w.layout)
    return await Spare.start(w, "", w.layout, firmware, ram)


async def _serve(w: Worker, disks: dict[DiskKey, Path]) -> None:
    """Each export continues in its new child; the replaced images are closed (they are
    discarded, or a checkpoint's read-only images)."""
    for key, path in disks.items():
        child = await asyncio.to_thread(open_image, path, True)
        try:
            old = await w.disks.swap_image(*key, child)
        except BaseException:
            await asyncio.to_thread(child.close)
            raise
        await asyncio.to_thread(old.close)
    record_paths(w.config, disks)


async def _run_from(w: Worker, memory: Path, paused: bool, new: Spare) -> None:
    """Attach to the new QEMU, give its sockets the usual names, and run it from
    ``memory``."""
    assert w.proc is not None
    qmp = await new.connected()
    w.qmp = qmp
    w.watch_events(qmp)
    if w.config.com1.mode == "console":
        await w.console.attach(str(new.layout.serial))
    if isinstance(new.layout, SpareLayout):
        for spare, usual in zip(_qemu_sockets(new.layout), _qemu_sockets(w.layout), strict=True):
            with contextlib.suppress(FileNotFoundError):
                spare.rename(usual)
    await load_memory(qmp, memory, LOAD_TIMEOUT_S)
    if not paused:
        await qmp.execute("cont")
    w.sampler = StatsSampler(qmp, w.proc.pid, w.config.memory_startup_mib, w.env.monotonic)
    try:
        await w.sampler.enable_guest_stats()
    except QmpError as e:
        w.log.info("guest memory statistics unavailable: %s", e)
