"""Run a journaled plan step by step: the only module that carries checkpoint steps out.

The journal is written before the first step and after every step but those recovery may
as well repeat, so a crash between any two steps leaves a record
:mod:`pyhv.checkpoints.recovery` can finish or undo. Tests crash the process on purpose with
``PYHV_FAILPOINT=checkpoint.<op>.after_step_<n>``: it exits at once, like ``kill -9``, after
``n`` steps are done (the journal may record fewer of them: see :meth:`StepRunner.run`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyhv.checkpoints.journal import Journal, clear_journal, save_journal
from pyhv.checkpoints.steps import (
    ApplyRunning,
    CopyFile,
    CreateDiff,
    Delete,
    MarkSaved,
    Merge,
    Step,
    WriteConfig,
    WriteTree,
)
from pyhv.checkpoints.store import save_tree
from pyhv.errors import NotFoundError
from pyhv.inventory import Inventory
from pyhv.model import VmState
from pyhv.saved_state_file import write_run_state
from pyhv.storage import CreateSpec, create_image
from pyhv.storage.operations import merge_image
from pyhv.storage.operations.files import fsync_dir
from pyhv.storage.operations.progress import Progress
from pyhv.worker.status_file import current_status, write_status

FAILPOINT_ENV = "PYHV_FAILPOINT"
KILLED_EXIT_CODE = 137
#: Steps after the commit that only rewrite or remove one small file: idempotent and quick.
RERUN_CHEAPLY = (WriteTree, WriteConfig, MarkSaved, Delete)


class StepRunner:
    def __init__(
        self,
        inventory: Inventory,
        tree_path: Path,
        journal_path: Path,
        progress: Progress | None = None,
        merge_online: Callable[[Merge], bool] | None = None,
        apply_online: Callable[[ApplyRunning], bool] | None = None,
    ) -> None:
        self.inventory = inventory
        self.tree_path = tree_path
        self.journal_path = journal_path
        self.progress = progress  # of each merge, the only step that takes long
        self.merge_online = merge_online  # the running VM's worker, when it serves the child
        self.apply_online = apply_online  # the live VM's worker; False when there is none

    def begin(self, journal: Journal) -> None:
        """Journal an operation before its first step changes anything."""
        save_journal(self.journal_path, journal)
        _failpoint(journal)

    def run(self, journal: Journal) -> None:
        """Journal, then run the steps not done yet; the journal goes when all are.

        The journal is not rewritten after a step recovery may as well run again cheaply
        (:data:`RERUN_CHEAPLY` after the commit) nor after the last one: each rewrite is an
        fsync of the file and of its folder, and a crash then only repeats such steps.
        """
        self.begin(journal)
        while journal.done < len(journal.steps):
            step = journal.steps[journal.done]
            self._do(step, journal)
            journal = journal.advanced()
            rerun = journal.done > journal.commit and (
                isinstance(step, RERUN_CHEAPLY) or journal.done == len(journal.steps)
            )
            if not rerun:
                save_journal(self.journal_path, journal)
            _failpoint(journal)
        clear_journal(self.journal_path)

    def undo(self, steps: list[Step], journal: Journal) -> None:
        for step in steps:
            self._do(step, journal)
        clear_journal(self.journal_path)

    def _do(self, step: Step, journal: Journal) -> None:
        if isinstance(step, CreateDiff):
            create_image(step.path, CreateSpec(size=0, parent=step.parent))
        elif isinstance(step, CopyFile):
            _link_or_copy(Path(step.src), Path(step.dst))
        elif isinstance(step, WriteTree):
            save_tree(self.tree_path, journal.tree)
        elif isinstance(step, WriteConfig):
            self.inventory.save(journal.vm_config())
        elif isinstance(step, MarkSaved):
            self._mark_saved(journal.vm_config().id, step.paused)
        elif isinstance(step, ApplyRunning):
            apply = self.apply_online
            if apply is None or not apply(step):
                self._save_memory(journal.vm_config().id, step)
        elif isinstance(step, Merge):
            # Done once the child is gone: merge_image deletes it only after the flush.
            online = self.merge_online
            if Path(step.child).exists() and not (online is not None and online(step)):
                merge_image(step.child, step.into, self.progress)
        elif isinstance(step, Delete):
            path = Path(step.path)
            if path.exists():
                path.unlink()
                fsync_dir(path.parent)

    def _save_memory(self, vm_id: str, step: ApplyRunning) -> None:
        """The VM is not live any more: the memory becomes its saved state (a new name for
        it, replacing any saved state a crash left), so the VM is Saved in the checkpoint."""
        self._write_run_state(vm_id, step.paused)
        saved = self.inventory.paths.vm_saved_state(vm_id)
        saved.unlink(missing_ok=True)
        _link_or_copy(Path(step.memory), saved)
        self._record_saved(vm_id)

    def _mark_saved(self, vm_id: str, paused: bool) -> None:
        self._write_run_state(vm_id, paused)
        self._record_saved(vm_id)

    def _record_saved(self, vm_id: str) -> None:
        paths = self.inventory.paths
        status = current_status(paths, vm_id)
        update = {
            "state": VmState.SAVED,
            "reason": "checkpoint applied",
            "since": datetime.now(UTC),
        }
        write_status(paths.vm_status(vm_id), status.model_copy(update=update))

    def _write_run_state(self, vm_id: str, paused: bool) -> None:
        """Beside the saved state, before it counts: a restore resumes it Paused or Running."""
        paths = self.inventory.paths
        paths.vm_state_dir(vm_id).mkdir(parents=True, exist_ok=True)
        write_run_state(paths.vm_saved_state_info(vm_id), paused=paused)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A second name for a memory file, or a copy across file systems. A link is enough:
    memory files are never changed in place (saved states are written under a temporary
    name and renamed, and restoring only reads and then unlinks the saved state).

    :raises NotFoundError: the memory file is gone (moved away by hand).
    """
    if not src.is_file():
        raise NotFoundError(f"memory file {src} is missing: put it back, or remove the checkpoint")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        _fsync_file(dst)
    fsync_dir(dst.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _failpoint(journal: Journal) -> None:
    if os.environ.get(FAILPOINT_ENV) == f"checkpoint.{journal.op}.after_step_{journal.done}":
        os._exit(KILLED_EXIT_CODE)
