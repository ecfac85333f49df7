"""The steps that make a VM Saved in a checkpoint's memory: the run state goes with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.checkpoints import execute
from pyhv.checkpoints.execute import StepRunner
from pyhv.checkpoints.journal import Journal
from pyhv.checkpoints.steps import (
    ApplyRunning,
    CopyFile,
    Delete,
    MarkSaved,
    Step,
    WriteConfig,
    WriteTree,
)
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.errors import NotFoundError
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState
from pyhv.paths import HomePaths
from pyhv.saved_state_file import saved_paused
from pyhv.worker.status_file import current_status


def run_step(tmp_path: Path, step: Step, applied: bool | None = None) -> tuple[HomePaths, str]:
    paths = HomePaths(tmp_path / "home")
    inventory = Inventory(paths)
    config = inventory.create(VmConfig(name="vm1"))
    folder = paths.vm_checkpoints_dir(config.id)
    folder.mkdir(parents=True)
    seen: list[ApplyRunning] = []

    def apply_online(s: ApplyRunning) -> bool:
        seen.append(s)
        return bool(applied)

    runner = StepRunner(
        inventory,
        folder / "tree.json",
        folder / "journal.json",
        apply_online=apply_online if applied is not None else None,
    )
    journal = Journal(
        op="apply", steps=[step], commit=0, tree=CheckpointTree(), config=config.model_dump()
    )
    runner.run(journal)
    assert seen == ([step] if applied is not None else [])
    return paths, config.id


def test_mark_saved_records_the_run_state_of_the_memory(tmp_path: Path) -> None:
    paths, vm_id = run_step(tmp_path, MarkSaved(paused=True))
    assert saved_paused(paths.vm_saved_state_info(vm_id))
    paths, vm_id = run_step(tmp_path / "2", MarkSaved())
    assert not saved_paused(paths.vm_saved_state_info(vm_id))


def test_a_live_apply_without_a_live_vm_leaves_it_saved_in_the_memory(tmp_path: Path) -> None:
    memory = tmp_path / "c1.vmrs"
    memory.write_bytes(b"memory of c1")
    step = ApplyRunning(apply_id="a1", disks={"0:0": "/d/x.avhdx"}, memory=str(memory), paused=True)
    paths, vm_id = run_step(tmp_path, step, applied=False)
    assert paths.vm_saved_state(vm_id).read_bytes() == b"memory of c1"
    assert saved_paused(paths.vm_saved_state_info(vm_id))
    assert current_status(paths, vm_id).state == VmState.SAVED
    assert memory.exists()  # the checkpoint keeps its own


def test_a_live_apply_of_a_memory_file_moved_away_fails_in_one_line(tmp_path: Path) -> None:
    step = ApplyRunning(apply_id="a1", disks={}, memory=str(tmp_path / "gone.vmrs"))
    with pytest.raises(NotFoundError, match=r"memory file .*gone\.vmrs is missing: put it back"):
        run_step(tmp_path, step, applied=False)


def test_a_live_apply_done_by_the_worker_leaves_no_saved_state(tmp_path: Path) -> None:
    memory = tmp_path / "c1.vmrs"
    memory.write_bytes(b"memory of c1")
    step = ApplyRunning(apply_id="a1", disks={"0:0": "/d/x.avhdx"}, memory=str(memory))
    paths, vm_id = run_step(tmp_path, step, applied=True)
    assert not paths.vm_saved_state(vm_id).exists()


def test_the_journal_is_not_rewritten_for_steps_recovery_may_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the commit, rewriting the tree, the configuration or deleting a file is cheap to
    repeat, and so is the last step: the journal records only the commit and the apply."""
    recorded: list[int] = []
    monkeypatch.setattr(execute, "save_journal", lambda path, j: recorded.append(j.done))
    paths = HomePaths(tmp_path / "home")
    inventory = Inventory(paths)
    config = inventory.create(VmConfig(name="vm1"))
    folder = paths.vm_checkpoints_dir(config.id)
    folder.mkdir(parents=True)
    memory = tmp_path / "c1.vmrs"
    memory.write_bytes(b"memory of c1")
    copy = tmp_path / "copy.vmrs"
    steps: list[Step] = [
        CopyFile(src=str(memory), dst=str(copy)),
        WriteTree(),
        WriteConfig(),
        ApplyRunning(apply_id="a1", disks={}, memory=str(memory)),
        Delete(path=str(copy)),
    ]
    runner = StepRunner(
        inventory, folder / "tree.json", folder / "journal.json", apply_online=lambda s: True
    )
    runner.run(
        Journal(
            op="apply", steps=steps, commit=1, tree=CheckpointTree(), config=config.model_dump()
        )
    )
    assert recorded == [0, 1, 4]
    assert (folder / "tree.json").exists() and not copy.exists()
