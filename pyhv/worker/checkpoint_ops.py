"""Control ops for checkpoints of a running or paused VM.

``checkpoint_swap`` takes the disks and the memory at one instant::

    {"disks": {"<controller>:<slot>": "<new child path>", …},
     "memory_path": "<file>" | null, "freeze": bool}
    → {"paused_ms": float, "total_ms": float, "memory_error": str | null}

With ``freeze`` (a production checkpoint) the guest agent freezes the guest's file systems
first and thaws them at the end; without a working agent the op fails before anything
happened. The memory file is handed to QEMU and each disk's child made while the guest
still runs; then the guest is stopped, each disk continues in its child
(:mod:`.checkpoint_disks`), and the memory save starts (:mod:`.memory_save`), which resumes
a running guest as soon as the devices are saved: ``paused_ms`` is that stop. Any failure
up to the resume undoes the swap and lets the guest go on as before. A memory save that fails
later, while the guest already writes into the children, cannot be undone: the checkpoint is
then disks only and ``memory_error`` says why.

``merge_running`` ``{"disk": "<controller>:<slot>", "into": "<parent path>"}`` →
``{"copied_bytes": int, "total_ms": float}`` folds the differencing disk the VM runs on into
its parent while the guest keeps writing (:mod:`.online_merge`); the disk continues in the
parent and the child is deleted.

``checkpoint_apply`` ``{"apply_id": str, "disks": {"<controller>:<slot>": "<new child
path>", …}, "memory_path": "<file>", "paused": bool}`` → ``{"total_ms": float}`` puts the VM
back to a checkpoint with memory: the disks continue in the given children and a new QEMU
runs from the memory file, Paused with ``paused`` (:mod:`.checkpoint_apply`). Asked again
with an ``apply_id`` it has done (a retry after the caller crashed), it answers at once;
when it fails the VM ends Off. ``checkpoint_apply_prepare`` ``{"apply_id": str}`` →
``{"prepared": bool}``, sent before the caller makes the new disks, starts that QEMU
meanwhile and stops a running guest (its state is about to be discarded, and the new QEMU
starts sooner with its CPU); the spare is dropped, and the guest continued, unless the
apply of that ``apply_id`` comes within ``SPARE_TIMEOUT_S``.

``disk_images`` answers which file each disk is served from (crash recovery asks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyhv.errors import NotFoundError, PyhvError, QmpError, StateError, UsageError
from pyhv.model import VmState
from pyhv.model.status import LIVE_STATES
from pyhv.storage import open_image
from pyhv.storage.operations.files import fsync_dir
from pyhv.storage.operations.merge import KeepsIdentity
from pyhv.worker.checkpoint_apply import Spare, prepare_spare, replace_qemu
from pyhv.worker.checkpoint_disks import (
    DiskKey,
    SwappedDisks,
    make_children,
    parse_disk_key,
    record_paths,
    swap_in_children,
)
from pyhv.worker.memory_save import MemorySave, prepare_memory_save, start_memory_save
from pyhv.worker.online_merge import MirrorImage, copy_into_target
from pyhv.worker.qmp import Qmp
from pyhv.worker.states import Action, Event

if TYPE_CHECKING:
    from pyhv.worker.worker import Worker

#: A spare QEMU waits this long for its apply: the caller only makes a few new differencing
#: disks and journals them in between; a caller that crashed meanwhile must not leave it.
SPARE_TIMEOUT_S = 10.0


def parse_swap_args(args: dict[str, Any]) -> tuple[dict[DiskKey, Path], Path | None, bool]:
    """:raises UsageError: a malformed request."""
    try:
        disks = {parse_disk_key(k): Path(str(v)) for k, v in dict(args["disks"]).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"checkpoint_swap needs disks as {{'controller:slot': path}}: {e}") from e
    memory = args.get("memory_path")
    return disks, Path(str(memory)) if memory else None, bool(args.get("freeze", False))


class CheckpointOps:
    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self._busy = asyncio.Lock()
        self._applied: set[str] = set()  # apply_ids of checkpoint_apply done
        self._spare: Spare | None = None
        self._spare_expiry: asyncio.TimerHandle | None = None
        self._holding = False  # the guest was stopped for the spare: to resume if unused
        self._resuming: asyncio.Future[None] | None = None  # held so it is not collected

    def handlers(self) -> dict[str, Any]:
        return {
            "checkpoint_swap": self.checkpoint_swap,
            "checkpoint_apply": self.checkpoint_apply,
            "checkpoint_apply_prepare": self.checkpoint_apply_prepare,
            "merge_running": self.merge_running,
            "disk_images": self.disk_images,
        }

    async def disk_images(self, args: dict[str, Any]) -> Any:
        """``{"controller:slot": path}`` as served now (waits for a checkpoint under way)."""
        async with self._busy:
            return {f"{c}:{d.slot}": str(d.path) for c, d in self.w.config.disks()}

    async def checkpoint_swap(self, args: dict[str, Any]) -> Any:
        disks, memory, freeze = parse_swap_args(args)
        async with self._busy:
            self._require_live("checkpoint")
            self._require_disks(disks)
            state = self.w.status.state
            started = time.monotonic()
            if freeze:
                await self._agent("guest-fsfreeze-freeze", "freeze the guest's file systems")
            try:
                paused_ms, save = await self._take(disks, memory, state == VmState.RUNNING)
            except BaseException:
                if freeze:
                    with contextlib.suppress(PyhvError):
                        await self._agent("guest-fsfreeze-thaw", "thaw the guest's file systems")
                raise
            if freeze:
                await self._agent("guest-fsfreeze-thaw", "thaw the guest's file systems")
            memory_error = None
            if save is not None:
                try:
                    await save.finish()
                except (PyhvError, OSError) as e:
                    memory_error = str(e)
            return {
                "paused_ms": paused_ms,
                "total_ms": (time.monotonic() - started) * 1000,
                "memory_error": memory_error,
            }

    async def checkpoint_apply(self, args: dict[str, Any]) -> Any:
        disks, memory, _ = parse_swap_args(args)
        if memory is None:
            raise UsageError("checkpoint_apply needs the checkpoint's memory_path")
        paused = bool(args.get("paused", False))
        apply_id = str(args.get("apply_id", ""))
        async with self._busy:
            if apply_id and apply_id in self._applied:
                return {"total_ms": 0.0}
            spare = self._take_spare(apply_id)
            try:
                self._require_live("apply a checkpoint to")
                self._require_disks(disks)
                if not memory.is_file():  # checked before the running QEMU is stopped
                    raise NotFoundError(f"the checkpoint's memory file {memory} is missing")
                started = time.monotonic()
                self.w.record(Action.APPLY)
            except BaseException:
                if spare is not None:
                    self._drop_spare(spare)
                raise
            try:
                await replace_qemu(self.w, disks, memory, paused, spare)
            except BaseException:
                await self.w.exited.wait()  # answer once the VM is Off
                raise
            self._applied.add(apply_id)
            self.w.record(Event.STARTED_PAUSED if paused else Event.STARTED)
            total_ms = (time.monotonic() - started) * 1000
            self.w.log.info("applied checkpoint memory %s in %.0f ms", memory.name, total_ms)
            return {"total_ms": total_ms}

    async def checkpoint_apply_prepare(self, args: dict[str, Any]) -> Any:
        apply_id = str(args["apply_id"])
        async with self._busy:
            self._require_live("apply a checkpoint to")
            self._take_spare(None)
            self._spare = await prepare_spare(self.w, apply_id)
            if self._spare is None:
                return {"prepared": False}
            loop = asyncio.get_running_loop()
            self._spare_expiry = loop.call_later(SPARE_TIMEOUT_S, self._take_spare, None)
            # The guest's state is about to be discarded: stopped now, it leaves its CPU to
            # the new QEMU's start and the caller's work (2 cores here: 20-40 ms sooner).
            if self.w.status.state == VmState.RUNNING and self.w.qmp is not None:
                await self.w.qmp.execute("stop")
                self._holding = True
            return {"prepared": True}

    def _take_spare(self, apply_id: str | None) -> Spare | None:
        """The spare QEMU for ``apply_id`` if it still runs; any other is discarded."""
        spare, self._spare = self._spare, None
        if self._spare_expiry is not None:
            self._spare_expiry.cancel()
            self._spare_expiry = None
        if spare is not None and (spare.apply_id != apply_id or spare.exit.done()):
            self._drop_spare(spare)
            return None
        self._holding = False  # the apply stops the old QEMU for good
        return spare

    def _drop_spare(self, spare: Spare) -> None:
        """Discard a spare that will not be used; a guest stopped for it runs on."""
        spare.discard()
        if self._holding and self.w.qmp is not None:
            self._resuming = asyncio.ensure_future(self._resume_held(self.w.qmp))
        self._holding = False

    async def _resume_held(self, qmp: Qmp) -> None:
        """``cont`` the QEMU stopped for the spare, unless it is gone, the VM paused, or a
        newer spare holds it."""
        async with self._busy:
            if self.w.qmp is qmp and self.w.status.state == VmState.RUNNING and not self._holding:
                with contextlib.suppress(QmpError):
                    await qmp.execute("cont")

    async def _take(
        self, disks: dict[DiskKey, Path], memory: Path | None, running: bool
    ) -> tuple[float, MemorySave | None]:
        """Stop, swap, start the memory save, resume: the instant the checkpoint stands for."""
        qmp = self.w.qmp
        assert qmp is not None
        swapped: SwappedDisks | None = None
        save: MemorySave | None = None
        stopped = time.monotonic()
        try:
            swapped, save = await self._prepare(qmp, disks, memory, running)
            stopped = time.monotonic()
            if running:
                await qmp.execute("stop")
            await swap_in_children(swapped)
            if save is not None:
                await start_memory_save(save)
        except BaseException:
            if swapped is not None:
                await swapped.undo()
            if save is not None and not save.started:
                await save.abort()
            if running:
                with contextlib.suppress(QmpError):
                    await qmp.execute("cont")
            raise
        if running and save is None:
            await qmp.execute("cont")
        paused_ms = (time.monotonic() - stopped) * 1000 if running else 0.0
        record_paths(self.w.config, disks)
        await swapped.commit()
        return paused_ms, save

    async def _prepare(
        self, qmp: Qmp, disks: dict[DiskKey, Path], memory: Path | None, running: bool
    ) -> tuple[SwappedDisks, MemorySave | None]:
        """Make the children and set the memory save up side by side, while the guest runs:
        one waits on the disk, the other on QEMU (each about 20 ms here). When either fails,
        what the other did is undone too.
        """
        children = make_children(self.w.disks, disks)
        if memory is None:
            return await children, None
        made, prepared = await asyncio.gather(
            children, prepare_memory_save(qmp, memory, background=running), return_exceptions=True
        )
        if isinstance(made, BaseException) or isinstance(prepared, BaseException):
            if isinstance(made, SwappedDisks):
                await made.undo()
            if isinstance(prepared, MemorySave):
                await prepared.abort()
        if isinstance(made, BaseException):
            raise made
        if isinstance(prepared, BaseException):
            raise prepared
        return made, prepared

    async def merge_running(self, args: dict[str, Any]) -> Any:
        """:raises UsageError: ``into`` is not the parent of the disk's image."""
        key, into = parse_disk_key(str(args["disk"])), Path(str(args["into"]))
        async with self._busy:
            self._require_live("merge a disk of")
            started = time.monotonic()
            child = self.w.disks.image(*key)
            if child.parent is None or child.parent.path.resolve() != into.resolve():
                raise UsageError(f"{into} is not the parent of {child.path}")
            target = await asyncio.to_thread(open_image, into, True)
            # The child must stay linked to its parent until it is gone (a crash: the merge
            # is finished offline), so a VHDX parent keeps its DataWriteGuid meanwhile.
            if isinstance(target, KeepsIdentity):
                target.keep_identity = True
            mirror = MirrorImage(child, target)
            await self.w.disks.swap_image(*key, mirror)
            try:
                copied = await asyncio.to_thread(copy_into_target, mirror)
                await self.w.disks.swap_image(*key, target)
            except BaseException:
                await self.w.disks.swap_image(*key, child)
                await asyncio.to_thread(target.close)
                raise
            await asyncio.to_thread(target.flush)
            await asyncio.to_thread(mirror.close)
            child.path.unlink()
            fsync_dir(child.path.parent)
            if isinstance(target, KeepsIdentity):
                target.keep_identity = False
            record_paths(self.w.config, {key: into})
            total_ms = (time.monotonic() - started) * 1000
            self.w.log.info(
                "merged %s into %s online: %d bytes, %.0f ms", child.path, into, copied, total_ms
            )
            return {"copied_bytes": copied, "total_ms": total_ms}

    def _require_live(self, verb: str) -> None:
        state = self.w.status.state
        if state not in LIVE_STATES or self.w.qmp is None:
            raise StateError(f"cannot {verb} VM '{self.w.config.name}' here: it is {state}")

    def _require_disks(self, disks: dict[DiskKey, Path]) -> None:
        unknown = set(disks) - {(c, d.slot) for c, d in self.w.config.disks()}
        if unknown:
            raise UsageError(f"VM '{self.w.config.name}' has no disk in SCSI slot(s) {unknown}")

    async def _agent(self, command: str, what: str) -> None:
        try:
            await self.w.agent.request(command)
        except PyhvError as e:
            raise StateError(f"cannot {what} of VM '{self.w.config.name}': {e}") from e
