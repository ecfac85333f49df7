"""Checkpoints of one host's VMs: plan, journal, run; recover first whatever was cut off.

An Off VM's checkpoints are disks only; a Saved VM's take a copy of its saved state too.
Of a Running or Paused VM the worker swaps the disks inside its storage provider at the
instant it saves the memory (:mod:`pyhv.checkpoints.online`); a production checkpoint freezes
the guest's file systems instead and keeps no memory. Applying a checkpoint with memory to a
live VM replaces only its QEMU, in its worker; otherwise applying turns the VM off first and,
when the checkpoint has memory, restores it (Running or Paused again, or Saved as it was). Removing
works while the VM runs: a merge of the disk it runs on is done online by its worker.

One operation per VM at a time: an exclusive ``flock`` on ``checkpoints/.lock``.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pyhv.checkpoints import planner
from pyhv.checkpoints.execute import StepRunner
from pyhv.checkpoints.export import export_checkpoint
from pyhv.checkpoints.journal import Journal, load_journal
from pyhv.checkpoints.online import OnlineVm
from pyhv.checkpoints.recovery import Direction, Recovery, plan_recovery
from pyhv.checkpoints.steps import SwapRunning
from pyhv.checkpoints.store import JOURNAL_FILE, LOCK_FILE, TREE_FILE, load_tree, save_tree
from pyhv.checkpoints.tree import Checkpoint, CheckpointTree, CheckpointType
from pyhv.errors import PyhvError, StateError
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState
from pyhv.model.status import LIVE_STATES
from pyhv.paths import HomePaths
from pyhv.saved_state_file import saved_paused
from pyhv.storage.operations.progress import Progress
from pyhv.worker.status_file import current_status

MEMORY_SUFFIX = ".vmrs"  # Hyper-V's name for a checkpoint's saved memory and devices
_AT_REST = (VmState.OFF, VmState.SAVED)


class CheckpointManager:
    def __init__(
        self,
        paths: HomePaths | None = None,
        inventory: Inventory | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.paths = paths or HomePaths()
        self.inventory = inventory or Inventory(self.paths)
        self._now = now

    # -- reading ------------------------------------------------------------------------------
    def tree(self, vm: str) -> tuple[VmConfig, CheckpointTree]:
        """The VM and its tree, after finishing any operation a crash cut off."""
        with self.held(vm) as config:
            return config, load_tree(self._tree_path(config))

    def get(self, vm: str, name: str) -> tuple[VmConfig, Checkpoint]:
        config, tree = self.tree(vm)
        return config, tree.find(name, config.name)

    # -- operations ---------------------------------------------------------------------------
    def create(
        self, vm: str, name: str | None = None, kind: CheckpointType = CheckpointType.STANDARD
    ) -> Checkpoint:
        """Checkpoint-VM; the node records how long a running guest was paused.

        :raises StateError: the VM is starting or stopping; a production checkpoint without
            a working guest agent.
        :raises ConflictError: the name is taken.
        :raises PyhvError: the memory could not be saved (the checkpoint stands, disks only).
        """
        with self.held(vm) as config:
            state = self._state(config)
            if state not in (*_AT_REST, *LIVE_STATES):
                raise StateError(
                    f"cannot create a checkpoint of VM '{config.name}' while it is {state}"
                )
            tree = load_tree(self._tree_path(config))
            now, checkpoint_id = self._now(), str(uuid.uuid4())
            moment = planner.Moment(
                state,
                memory_file=str(self._dir(config) / f"{checkpoint_id.upper()}{MEMORY_SUFFIX}"),
                saved_state=str(self.paths.vm_saved_state(config.id)),
                saved_paused=saved_paused(self.paths.vm_saved_state_info(config.id)),
            )
            plan = planner.plan_create(
                tree,
                config,
                checkpoint_id=checkpoint_id,
                name=name if name is not None else planner.default_name(tree, config.name, now),
                kind=kind,
                now=now,
                moment=moment,
            )
            if state in LIVE_STATES:
                return self._take_online(config, plan, checkpoint_id)
            self._runner(config).run(Journal.of(plan))
            return plan.tree.get(checkpoint_id)

    def _take_online(self, config: VmConfig, plan: planner.Plan, checkpoint_id: str) -> Checkpoint:
        step = plan.steps[0]
        assert isinstance(step, SwapRunning)
        runner = self._runner(config)
        journal = Journal.of(plan, online=True)
        runner.begin(journal)
        try:
            result = OnlineVm(self.paths, config).swap(step)
        except PyhvError:
            self._recover(config)  # undone, or finished if the worker swapped after all
            raise
        memory_saved = result.memory_error is None
        runner.run(
            journal.swapped(checkpoint_id, memory_saved=memory_saved, paused_ms=result.paused_ms)
        )
        node = load_tree(self._tree_path(config)).get(checkpoint_id)
        if not memory_saved:
            raise PyhvError(
                f"checkpoint '{node.name}' was taken without memory (it applies as Off): "
                f"{result.memory_error}"
            )
        return node

    def apply(self, vm: str, name: str, progress: Progress | None = None) -> Checkpoint:
        """Restore-VMCheckpoint: the current state is discarded, and a checkpoint with memory
        comes back as it was taken: Running, Paused, or Saved.

        A live VM whose devices are those of the checkpoint stays up: its worker runs on
        from the checkpoint's memory in a new QEMU (:func:`planner.applies_live`). Otherwise
        the VM is turned off first and started again from the memory.
        """
        with self.held(vm) as config:
            tree = load_tree(self._tree_path(config))
            target = tree.find(name, config.name)
            online = OnlineVm(self.paths, config)
            live = self._state(config) in LIVE_STATES and planner.applies_live(config, target)
            image_id = str(uuid.uuid4())  # the apply_id of a live apply too
            if not live:
                online.turn_off()
            elif target.memory_state is not None:
                online.prepare_apply(image_id)
            plan = planner.plan_apply(
                tree,
                config,
                target,
                image_id=image_id,
                saved_state=str(self.paths.vm_saved_state(config.id)),
                live=live,
            )
            if target.memory_state is not None:
                self.paths.vm_state_dir(config.id).mkdir(parents=True, exist_ok=True)
            self._runner(config, progress).run(Journal.of(plan, online=live))
            # Saved: restored from the memory now (an apply in the worker that could not
            # load it leaves the VM Saved too, and this start says why it fails).
            restore = target.vm_state in LIVE_STATES and self._state(config) == VmState.SAVED
            if target.memory_state is not None and restore:
                online.restore()
            return target

    def remove(
        self, vm: str, name: str, subtree: bool = False, progress: Progress | None = None
    ) -> list[Checkpoint]:
        """Remove-VMCheckpoint; returns what was removed. While the VM runs, a merge of the
        disk it runs on is done by its worker (online merge); other merges touch only files
        it does not write."""
        with self.held(vm) as config:
            tree = load_tree(self._tree_path(config))
            target = tree.find(name, config.name)
            gone = tree.subtree(target.id) if subtree else [target]
            plan = planner.plan_remove(tree, config, target, subtree=subtree)
            online = self._state(config) not in _AT_REST
            self._runner(config, progress).run(Journal.of(plan, online=online))
            return gone

    def rename(self, vm: str, name: str, new_name: str) -> Checkpoint:
        """Rename-VMCheckpoint: one atomic write, in any VM state."""
        with self.held(vm) as config:
            tree = load_tree(self._tree_path(config))
            target = tree.find(name, config.name)
            new_tree = tree.renamed(target.id, new_name)
            save_tree(self._tree_path(config), new_tree)
            return new_tree.get(target.id)

    def export(self, vm: str, name: str, folder: Path) -> Path:
        """Export-VMCheckpoint: the checkpoint's disk chains, configuration and memory state.

        Frozen images never change, so this works in any VM state.
        """
        with self.held(vm) as config:
            tree = load_tree(self._tree_path(config))
            return export_checkpoint(tree.find(name, config.name), folder)

    def recover(self, vm: str) -> Recovery | None:
        """Finish or undo an operation a crash cut off; what was done, None when nothing was.

        pyhvd and the worker must call this before starting the VM.
        """
        config = self.inventory.get(vm)
        with self._lock_file(config):
            return self._recover(config)

    @contextmanager
    def held(self, vm: str) -> Iterator[VmConfig]:
        """Hold the VM's checkpoint lock, after recovery, around a state change: starting the
        VM inside it means no checkpoint operation can be half done under a running guest.

        :raises StateError: a cut-off operation cannot be recovered because the VM runs.
        """
        config = self.inventory.get(vm)
        with self._lock_file(config):
            self._recover(config)
            yield self.inventory.get(config.id)

    # -- helpers ------------------------------------------------------------------------------
    def _recover(self, config: VmConfig) -> Recovery | None:
        journal_path = self._dir(config) / JOURNAL_FILE
        journal = load_journal(journal_path)
        if journal is None:
            return None
        state = self._state(config)
        if state != VmState.OFF and not journal.online:
            # Steps run against disks the VM is using would corrupt them.
            raise StateError(
                f"VM '{config.name}' is {state} but a checkpoint {journal.op} was cut off "
                "before it finished; turn the VM off, then run `pyhv checkpoint list` to recover"
            )
        journal = self._settle_swap(config, journal)
        recovery = plan_recovery(journal)
        runner = self._runner(config)
        if recovery.direction == Direction.FORWARD:
            runner.run(journal)
        else:
            runner.undo(recovery.steps, journal)
        return recovery

    def _settle_swap(self, config: VmConfig, journal: Journal) -> Journal:
        """A running VM's checkpoint cut off around the worker's swap: if the swap happened,
        the checkpoint stands (with its memory if the file is complete)."""
        step = journal.steps[0] if journal.steps else None
        if journal.done >= journal.commit or not isinstance(step, SwapRunning):
            return journal
        if not OnlineVm(self.paths, config).swapped(step):
            return journal
        node = journal.tree.get(journal.tree.current or "")
        memory_saved = step.memory is not None and Path(step.memory).exists()
        return journal.swapped(node.id, memory_saved=memory_saved, paused_ms=None)

    @contextmanager
    def _lock_file(self, config: VmConfig) -> Iterator[None]:
        folder = self._dir(config)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _state(self, config: VmConfig) -> VmState:
        return current_status(self.paths, config.id).state

    def _runner(self, config: VmConfig, progress: Progress | None = None) -> StepRunner:
        folder = self._dir(config)
        return StepRunner(
            self.inventory,
            folder / TREE_FILE,
            folder / JOURNAL_FILE,
            progress,
            OnlineVm(self.paths, config).merge,
            OnlineVm(self.paths, config).apply,
        )

    def _dir(self, config: VmConfig) -> Path:
        return self.paths.vm_checkpoints_dir(config.id)

    def _tree_path(self, config: VmConfig) -> Path:
        return self._dir(config) / TREE_FILE
