"""Run a journaled plan step by step: the only module that carries checkpoint steps out.

The journal is written before the first step and after every step, so a crash between any two
steps leaves a record :mod:`pyhv.checkpoints.recovery` can finish or undo. Tests crash the
process on purpose with ``PYHV_FAILPOINT=checkpoint.<op>.after_step_<n>``: it exits at once,
like ``kill -9``, after the journal records ``n`` steps done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyhv.checkpoints.journal import Journal, clear_journal, save_journal
from pyhv.checkpoints.steps import (
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
from pyhv.inventory import Inventory
from pyhv.model import VmState
from pyhv.storage import CreateSpec, create_image
from pyhv.storage.operations import merge_image
from pyhv.storage.operations.files import fsync_dir
from pyhv.storage.operations.progress import Progress
from pyhv.worker.status_file import current_status, write_status

FAILPOINT_ENV = "PYHV_FAILPOINT"
KILLED_EXIT_CODE = 137


class StepRunner:
    def __init__(
        self,
        inventory: Inventory,
        tree_path: Path,
        journal_path: Path,
        progress: Progress | None = None,
        merge_online: Callable[[Merge], bool] | None = None,
    ) -> None:
        self.inventory = inventory
        self.tree_path = tree_path
        self.journal_path = journal_path
        self.progress = progress  # of each merge, the only step that takes long
        self.merge_online = merge_online  # the running VM's worker, when it serves the child

    def begin(self, journal: Journal) -> None:
        """Journal an operation before its first step changes anything."""
        save_journal(self.journal_path, journal)
        _failpoint(journal)

    def run(self, journal: Journal) -> None:
        """Journal, then run the steps not done yet; the journal goes when all are."""
        self.begin(journal)
        while journal.done < len(journal.steps):
            self._do(journal.steps[journal.done], journal)
            journal = journal.advanced()
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
            self._mark_saved(journal.vm_config().id)
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

    def _mark_saved(self, vm_id: str) -> None:
        paths = self.inventory.paths
        # The checkpoint's memory records no run state: a start resumes it Running.
        paths.vm_saved_state_info(vm_id).unlink(missing_ok=True)
        status = current_status(paths, vm_id)
        update = {
            "state": VmState.SAVED,
            "reason": "checkpoint applied",
            "since": datetime.now(UTC),
        }
        write_status(paths.vm_status(vm_id), status.model_copy(update=update))


def _link_or_copy(src: Path, dst: Path) -> None:
    """A second name for a memory file, or a copy across file systems. A link is enough:
    memory files are never changed in place (saved states are written under a temporary
    name and renamed, and restoring only reads and then unlinks the saved state)."""
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
