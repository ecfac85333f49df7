"""Checkpoints of one host's VMs: plan, journal, run; recover first whatever was cut off.

This stage handles VMs that are Off, whose checkpoints are disks only (a production checkpoint
of an Off VM is the same thing: no guest is running whose file systems could be frozen, which
is what Hyper-V does too). A running VM needs its worker to pause the guest, save memory and
swap the images inside the storage provider; until that path exists such requests are refused.

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
from pyhv.checkpoints.recovery import Direction, Recovery, plan_recovery
from pyhv.checkpoints.store import JOURNAL_FILE, LOCK_FILE, TREE_FILE, load_tree, save_tree
from pyhv.checkpoints.tree import Checkpoint, CheckpointTree, CheckpointType
from pyhv.errors import StateError
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState
from pyhv.paths import HomePaths
from pyhv.storage.operations.progress import Progress
from pyhv.worker.status_file import current_status


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
        """Checkpoint-VM of a VM that is Off.

        :raises StateError: the VM is not Off.
        :raises ConflictError: the name is taken.
        """
        with self.held(vm) as config:
            self._require_off(config, "create")
            tree = load_tree(self._tree_path(config))
            now, checkpoint_id = self._now(), str(uuid.uuid4())
            plan = planner.plan_create(
                tree,
                config,
                checkpoint_id=checkpoint_id,
                name=name if name is not None else planner.default_name(tree, config.name, now),
                kind=kind,
                now=now,
            )
            self._runner(config).run(Journal.of(plan))
            return plan.tree.get(checkpoint_id)

    def apply(self, vm: str, name: str, progress: Progress | None = None) -> Checkpoint:
        """Restore-VMCheckpoint: the current state is discarded.

        :raises StateError: the VM is not Off.
        """
        with self.held(vm) as config:
            self._require_off(config, "apply")
            tree = load_tree(self._tree_path(config))
            target = tree.find(name, config.name)
            plan = planner.plan_apply(
                tree,
                config,
                target,
                image_id=str(uuid.uuid4()),
                saved_state=str(self.paths.vm_saved_state(config.id)),
            )
            if target.memory_state is not None:
                self.paths.vm_state_dir(config.id).mkdir(parents=True, exist_ok=True)
            self._runner(config, progress).run(Journal.of(plan))
            return target

    def remove(
        self, vm: str, name: str, subtree: bool = False, progress: Progress | None = None
    ) -> list[Checkpoint]:
        """Remove-VMCheckpoint; returns what was removed.

        :raises StateError: the VM is not Off.
        """
        with self.held(vm) as config:
            self._require_off(config, "remove")
            tree = load_tree(self._tree_path(config))
            target = tree.find(name, config.name)
            gone = tree.subtree(target.id) if subtree else [target]
            plan = planner.plan_remove(tree, config, target, subtree=subtree)
            self._runner(config, progress).run(Journal.of(plan))
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
        state = current_status(self.paths, config.id).state
        if state != VmState.OFF:
            # Steps run against disks the VM is using would corrupt them.
            raise StateError(
                f"VM '{config.name}' is {state} but a checkpoint {journal.op} was cut off "
                "before it finished; turn the VM off, then run `pyhv checkpoint list` to recover"
            )
        recovery = plan_recovery(journal)
        runner = self._runner(config)
        if recovery.direction == Direction.FORWARD:
            runner.run(journal)
        else:
            runner.undo(recovery.steps, journal)
        return recovery

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

    def _require_off(self, config: VmConfig, verb: str) -> None:
        state = current_status(self.paths, config.id).state
        if state != VmState.OFF:
            raise StateError(
                f"cannot {verb} a checkpoint of VM '{config.name}': it is {state}, and "
                "checkpoints of a running VM need the worker (not built yet); turn it off first"
            )

    def _runner(self, config: VmConfig, progress: Progress | None = None) -> StepRunner:
        folder = self._dir(config)
        return StepRunner(self.inventory, folder / TREE_FILE, folder / JOURNAL_FILE, progress)

    def _dir(self, config: VmConfig) -> Path:
        return self.paths.vm_checkpoints_dir(config.id)

    def _tree_path(self, config: VmConfig) -> Path:
        return self._dir(config) / TREE_FILE
