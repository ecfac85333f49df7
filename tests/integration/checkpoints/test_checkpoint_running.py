"""Checkpoints of a running guest (issue 6 acceptance): memory and disks at one instant, any
node applies (the guest resumes from memory with its processes), a branch and back, removal
while the guest runs, and every file sound at the end. One guest for the whole module; the
tests run in file order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.checkpoints import CheckpointManager, CheckpointType
from pyhv.errors import StateError
from pyhv.model import VmState
from pyhv.storage.operations import check_chain
from pyhv.worker.local import LocalHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "cprun"
BOOT_TIMEOUT_S = 180.0
MakeVm = Callable[..., str]
Shell = Callable[[str, str], str]


@pytest.fixture(scope="module")
def vm(host: LocalHost, make_vm: MakeVm) -> str:
    make_vm(NAME)
    host.start(NAME, wait_ready_s=BOOT_TIMEOUT_S)
    return NAME


@pytest.fixture(scope="module")
def manager(host: LocalHost) -> CheckpointManager:
    return CheckpointManager(host.paths, host.inventory)


@pytest.fixture(scope="module")
def sleeper(vm: str, shell: Shell) -> str:
    """A process started before the first checkpoint; its pid."""
    return shell(vm, "sleep 10000 </dev/null >/dev/null 2>&1 & echo $!").strip()


def write(shell: Shell, vm: str, tag: str) -> None:
    shell(vm, f"echo {tag} > /file-{tag} && sync")


def seen(shell: Shell, vm: str) -> set[str]:
    """The files the guest shows, once from memory and once more from disk after dropping
    its caches: both views must agree."""
    listing = "ls / | grep '^file-' || true"
    cached = shell(vm, listing).split()
    on_disk = shell(vm, f"sync; echo 3 > /proc/sys/vm/drop_caches; {listing}").split()
    assert cached == on_disk
    return {name.removeprefix("file-") for name in cached}


def alive(shell: Shell, vm: str, pid: str) -> bool:
    return shell(vm, f"kill -0 {pid} 2>/dev/null && echo yes || echo no").strip() == "yes"


def test_checkpoints_save_memory_with_a_short_pause(
    host: LocalHost, vm: str, manager: CheckpointManager, shell: Shell, sleeper: str
) -> None:
    write(shell, vm, "A")
    c1 = manager.create(vm, "c1")
    write(shell, vm, "B")
    c2 = manager.create(vm, "c2")
    write(shell, vm, "C")
    for node in (c1, c2):
        assert node.memory_state is not None and Path(node.memory_state).is_file()
        assert node.vm_state == VmState.RUNNING
        assert node.paused_ms is not None
        print(f"checkpoint {node.name}: guest paused {node.paused_ms:.0f} ms")
    assert host.status(host.get(vm)).state == VmState.RUNNING
    assert seen(shell, vm) == {"A", "B", "C"}


def test_apply_resumes_the_guest_from_memory(
    host: LocalHost, vm: str, manager: CheckpointManager, shell: Shell, sleeper: str
) -> None:
    manager.apply(vm, "c1")
    assert host.status(host.get(vm)).state == VmState.RUNNING
    assert seen(shell, vm) == {"A"}
    assert alive(shell, vm, sleeper)
    manager.apply(vm, "c2")
    assert seen(shell, vm) == {"A", "B"}
    assert alive(shell, vm, sleeper)


def test_branch_and_back(vm: str, manager: CheckpointManager, shell: Shell) -> None:
    manager.apply(vm, "c1")
    write(shell, vm, "D")
    manager.create(vm, "branch")
    manager.apply(vm, "c2")
    assert seen(shell, vm) == {"A", "B"}
    manager.apply(vm, "branch")
    assert seen(shell, vm) == {"A", "D"}


def test_remove_while_running(
    host: LocalHost, vm: str, manager: CheckpointManager, shell: Shell
) -> None:
    gone = manager.remove(vm, "c1")
    assert [c.memory_state for c in gone] and not Path(str(gone[0].memory_state)).exists()
    assert host.status(host.get(vm)).state == VmState.RUNNING
    # The VM runs on a child of "branch" only: removing it would merge the running disk.
    with pytest.raises(StateError, match="online merge") as err:
        manager.remove(vm, "branch")
    assert "\n" not in str(err.value)
    manager.apply(vm, "c2")
    assert seen(shell, vm) == {"A", "B"}
    manager.apply(vm, "branch")
    assert seen(shell, vm) == {"A", "D"}


def test_production_checkpoint_freezes_and_keeps_no_memory(
    vm: str, manager: CheckpointManager, shell: Shell
) -> None:
    node = manager.create(vm, "prod", CheckpointType.PRODUCTION)
    assert node.memory_state is None and node.vm_state == VmState.OFF
    write(shell, vm, "E")  # the file systems were thawed
    assert seen(shell, vm) == {"A", "D", "E"}


def test_every_file_is_sound_and_none_is_left_over(
    host: LocalHost, vm: str, manager: CheckpointManager
) -> None:
    host.turn_off(vm)
    manager.remove(vm, "prod")  # Off: the merge of the current disk works offline
    config, tree = manager.tree(vm)
    disks = {str(d.path) for _, d in config.disks()}
    files = {str(p) for p in host.paths.home.iterdir() if p.suffix in (".vhdx", ".avhdx")}
    assert files == set(tree.images) | disks
    for path in files:
        assert check_chain(path) == [], path
    memory = {str(p) for p in host.paths.vm_checkpoints_dir(config.id).glob("*.vmrs*")}
    assert memory == {c.memory_state for c in tree.checkpoints if c.memory_state}
