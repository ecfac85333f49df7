"""Checkpoints of an Off VM on real VHDX and VHD files: every node applies, removal loses
nothing, and no file is left over."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyhv.checkpoints.journal import Journal, save_journal
from pyhv.checkpoints.planner import plan_create
from pyhv.checkpoints.tree import CheckpointTree, CheckpointType
from pyhv.errors import StateError
from pyhv.model import VmStatus, parse_vm_config
from pyhv.model.status import VmState
from pyhv.saved_state_file import saved_paused
from pyhv.service.transfer import read_export
from pyhv.storage import open_image
from pyhv.storage.operations import check_chain
from pyhv.worker.local import LocalHost
from pyhv.worker.status_file import current_status, write_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VM = "cpvm"


def test_apply_any_node_branch_and_remove(off_vm: Any, tmp_path: Path) -> None:
    m = off_vm.manager
    off_vm.write("A")
    m.create(VM, "c1")
    at_c1 = off_vm.state()
    off_vm.write("B")
    m.create(VM, "c2")
    at_c2 = off_vm.state()
    off_vm.write("C")

    m.apply(VM, "c1")
    assert off_vm.state() == at_c1
    m.apply(VM, "c2")
    assert off_vm.state() == at_c2

    m.apply(VM, "c1")  # a branch from c1 ...
    off_vm.write("D")
    m.create(VM, "c3")
    at_c3 = off_vm.state()
    m.apply(VM, "c2")  # ... and back
    assert off_vm.state() == at_c2
    off_vm.check()

    m.remove(VM, "c1")  # the shared parent of both branches
    off_vm.check()
    m.apply(VM, "c2")
    assert off_vm.state() == at_c2
    m.apply(VM, "c3")
    assert off_vm.state() == at_c3
    off_vm.write("E")
    now = off_vm.state()

    m.remove(VM, "c2")
    m.remove(VM, "c3")
    assert off_vm.state() == now
    assert off_vm.files() == off_vm.bases  # everything merged back into the base disks
    off_vm.check()
    for base in off_vm.bases:
        assert_qemu_reads_the_same(Path(base), tmp_path)


def assert_qemu_reads_the_same(image: Path, tmp_path: Path) -> None:
    """qemu-img checks VHDX (its vpc driver has no check) and must read what pyhv reads."""
    if image.suffix == ".vhdx":
        subprocess.run(["qemu-img", "check", str(image)], check=True, capture_output=True)
    raw = tmp_path / f"{image.name}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    with open_image(image) as disk:
        assert raw.read_bytes() == disk.read(0, disk.size), image


def test_remove_subtree_and_the_current_parent(off_vm: Any) -> None:
    m = off_vm.manager
    off_vm.write("A")
    m.create(VM, "c1")
    off_vm.write("B")
    m.create(VM, "c2")
    off_vm.write("C")
    m.create(VM, "c3")
    at_c3 = off_vm.state()
    m.apply(VM, "c1")
    at_c1 = off_vm.state()
    m.remove(VM, "c2", subtree=True)
    _, tree = m.tree(VM)
    assert [c.name for c in tree.checkpoints] == ["c1"]
    assert off_vm.state() == at_c1 != at_c3
    off_vm.check()
    m.remove(VM, "c1")
    assert off_vm.files() == off_vm.bases and off_vm.state() == at_c1


def test_rename_and_export_an_importable_chain(off_vm: Any, tmp_path: Path) -> None:
    m = off_vm.manager
    off_vm.write("A")
    m.create(VM, "c1")
    off_vm.write("B")
    m.create(VM, "c2")
    at_c2 = off_vm.state()
    off_vm.write("C")
    m.rename(VM, "c2", "before C")
    out = m.export(VM, "before C", tmp_path / "export")
    exported = sorted((out / "disks").iterdir())
    assert len(exported) == 4  # two disks, each base + the differencing disk of c1
    for path in exported:
        assert check_chain(path) == []
        with open_image(path) as image:
            assert all(str(layer.path).startswith(str(out)) for layer in image.chain())
    config = (out / "vm.json").read_text()
    assert str(off_vm.disks_dir) not in config and (out / "checkpoint.json").exists()
    copy, _ = read_export(out)  # what Import-VM takes: the same disks
    assert copy.disks() == parse_vm_config(config).disks()
    off_vm.inventory.save(copy.model_copy(update={"name": VM}))
    assert off_vm.state() == at_c2


def test_a_saved_vm_keeps_its_saved_state_and_comes_back_saved(off_vm: Any, tmp_path: Path) -> None:
    """Saved while Paused: the checkpoint, applied or exported, resumes Paused too."""
    config = off_vm.inventory.get(VM)
    paths = off_vm.manager.paths
    paths.vm_state_dir(config.id).mkdir(parents=True)
    paths.vm_saved_state(config.id).write_bytes(b"memory at c1")
    paths.vm_saved_state_info(config.id).write_text('{"state": "Paused"}')
    write_status(paths.vm_status(config.id), VmStatus(state=VmState.SAVED))
    node = off_vm.manager.create(VM, "c1")
    assert node.vm_state == VmState.SAVED and node.memory_state is not None
    assert node.resumes_paused
    assert Path(node.memory_state).read_bytes() == b"memory at c1"
    LocalHost(paths).turn_off(VM)  # discards the saved state
    off_vm.write("B")
    off_vm.manager.apply(VM, "c1")
    assert current_status(paths, config.id).state == VmState.SAVED
    assert paths.vm_saved_state(config.id).read_bytes() == b"memory at c1"
    assert saved_paused(paths.vm_saved_state_info(config.id))
    off_vm.check()

    out = off_vm.manager.export(VM, "c1", tmp_path / "export")
    assert (out / "state" / "memory.bin").read_bytes() == b"memory at c1"
    assert saved_paused(out / "state" / "memory.json")
    copy, _ = read_export(out)
    assert all(d.path.is_file() for _, d in copy.disks())


def test_an_interrupted_operation_is_not_recovered_under_a_running_vm(off_vm: Any) -> None:
    config = off_vm.inventory.get(VM)
    plan = plan_create(
        CheckpointTree(),
        config,
        checkpoint_id="00000000-0000-0000-0000-000000000001",
        name="c1",
        kind=CheckpointType.STANDARD,
        now=config.created,
    )
    folder = off_vm.manager.paths.vm_checkpoints_dir(config.id)
    folder.mkdir(parents=True)
    save_journal(folder / "journal.json", Journal.of(plan))
    paths = off_vm.manager.paths
    paths.vm_state_dir(config.id).mkdir(parents=True)
    paths.vm_saved_state(config.id).write_bytes(b"memory")
    write_status(paths.vm_status(config.id), VmStatus(state=VmState.SAVED))
    with pytest.raises(StateError, match="cut off before it finished; turn the VM off"):
        off_vm.manager.tree(VM)


def test_held_recovers_first_and_excludes_other_operations(off_vm: Any) -> None:
    off_vm.write("A")
    with off_vm.manager.held(VM) as config:
        assert config.name == VM
        folder = off_vm.manager.paths.vm_checkpoints_dir(config.id)
        fd = os.open(folder / ".lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
