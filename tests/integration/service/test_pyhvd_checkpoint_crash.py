"""Crashes inside checkpoint operations on a running guest (issue 6 acceptance): pyhvd dies at
a journal step of create, apply and remove (``PYHV_FAILPOINT`` in pyhvd, which runs them),
and the worker is killed too right after a checkpoint's swap, after an apply's commit and
after a removal's commit (before its merges). After each crash pyhvd restarts and recovery
must leave a consistent VM and tree; at the end every checkpoint applies with the files
written before it, every image is sound and no file is orphaned. One guest boot."""

from __future__ import annotations

import os
import shutil
import signal
import time

import psutil
import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory
from test_pyhvd_guest import kit, wait_for_agent

from pyhv.checkpoints import CheckpointManager
from pyhv.checkpoints.execute import FAILPOINT_ENV, KILLED_EXIT_CODE
from pyhv.checkpoints.store import JOURNAL_FILE
from pyhv.client import PyhvClient
from pyhv.model import VmConfig, VmState
from pyhv.paths import HomePaths
from pyhv.storage.operations import check_chain

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VM = "crashvm"
CRASH_TIMEOUT_S = 300.0
IMAGE_SUFFIXES = (".vhdx", ".avhdx", ".vhd", ".avhd")


def write(c: PyhvClient, tag: str) -> None:
    out = c.exec(VM, ["/bin/sh", "-c", f"echo {tag} > /file-{tag} && sync"])
    assert out.exit_code == 0, out.stderr


def seen(c: PyhvClient) -> set[str]:
    out = c.exec(VM, ["/bin/sh", "-c", "ls / | grep '^file-' || true"])
    return {name.removeprefix("file-") for name in out.stdout.split()}


def crash(d: Pyhvd, failpoint: str, operation: str, *args: str) -> None:
    """Restart pyhvd so it dies at ``failpoint``, start the operation, see pyhvd die."""
    d.stop()
    d.env[FAILPOINT_ENV] = failpoint
    try:
        d.start()
        c = d.client()
        getattr(c, operation)(VM, *args)
        assert d.proc is not None
        assert d.proc.wait(CRASH_TIMEOUT_S) == KILLED_EXIT_CODE, failpoint
    finally:
        del d.env[FAILPOINT_ENV]


def restart(d: Pyhvd) -> PyhvClient:
    d.start()
    c = d.client()
    c.checkpoints(VM)  # reading the tree recovers first
    check_consistent(d, c)
    return c


def check_consistent(d: Pyhvd, c: PyhvClient) -> None:
    """No journal left, every image sound and read by the VM or a checkpoint, every memory
    file some checkpoint's."""
    vm_id = c.get_vm(VM).config.id
    config, tree = CheckpointManager(HomePaths(d.home)).tree(vm_id)
    assert not (HomePaths(d.home).vm_checkpoints_dir(vm_id) / JOURNAL_FILE).exists()
    current = {str(disk.path) for _, disk in config.disks()}
    needed = set(tree.images) | current
    found = {str(p) for p in (d.home / "disks").iterdir() if p.suffix in IMAGE_SUFFIXES}
    assert found == needed, f"orphans: {found - needed}, missing: {needed - found}"
    # A running VM's worker holds the images it writes: those are checked once it is off.
    in_use = current if c.get_vm(VM).status.state != VmState.OFF else set()
    for path in found - in_use:
        assert check_chain(path) == [], path
    memory = {str(p) for p in d.home.rglob("*.vmrs")}
    assert memory == {n.memory_state for n in tree.checkpoints if n.memory_state is not None}


def wait_running(c: PyhvClient) -> None:
    wait_state(c, VmState.RUNNING)
    wait_for_agent(c, VM)


def wait_state(c: PyhvClient, state: VmState) -> None:
    """Until pyhvd shows ``state``: it reads what recovery wrote at its next scan."""
    for _ in range(100):
        if c.get_vm(VM).status.state == state:
            return
        time.sleep(0.1)
    assert c.get_vm(VM).status.state == state


def kill_worker(d: Pyhvd) -> None:
    """kill -9 the VM's worker (pyhvd is down: its pid file says which)."""
    (pid_file,) = (d.home / "run").glob("*/worker.pid")
    pid = int(pid_file.read_text())
    worker = psutil.Process(pid)
    children = worker.children(recursive=True)
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([worker, *children], timeout=30)


def test_crashes_inside_checkpoint_operations_of_a_running_vm(
    pyhvd_factory: PyhvdFactory,
) -> None:
    paths = kit()
    d = pyhvd_factory(extra_env={"PYHV_STORAGE_ROOTS": str(paths.kernel.parent)})
    disk = d.home / "disks" / "root.vhdx"
    shutil.copyfile(paths.rootdisk, disk)
    d.start()
    c = d.client()
    config = VmConfig.model_validate(
        {
            "name": VM,
            "memory_startup_mib": 512,
            "kernel": {
                "kernel": str(paths.kernel),
                "initrd": str(paths.initrd),
                "cmdline": paths.cmdline,
            },
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disk)}]}],
        }
    )
    c.create_vm(config)
    c.start(VM, wait=True)
    wait_for_agent(c, VM)
    expected: dict[str, set[str]] = {}

    write(c, "A")
    c.create_checkpoint(VM, "c1", wait=True)
    expected["c1"] = {"A"}
    write(c, "B")

    # pyhvd dies before the swap: the checkpoint is undone, the guest runs on.
    crash(d, "checkpoint.create.after_step_0", "create_checkpoint", "lost")
    c = restart(d)
    assert [n.name for n in c.checkpoints(VM).checkpoints] == ["c1"]
    wait_running(c)

    # pyhvd dies right after the swap, and the worker is killed: the checkpoint stands.
    crash(d, "checkpoint.create.after_step_1", "create_checkpoint", "c2")
    kill_worker(d)
    c = restart(d)
    assert [n.name for n in c.checkpoints(VM).checkpoints] == ["c1", "c2"]
    expected["c2"] = {"A", "B"}
    assert c.get_vm(VM).status.state == VmState.OFF
    c.apply_checkpoint(VM, "c2", wait=True)
    wait_running(c)
    assert seen(c) == {"A", "B"}
    write(c, "C")
    c.create_checkpoint(VM, "c3", wait=True)
    expected["c3"] = {"A", "B", "C"}

    # pyhvd dies while applying to the running VM, before the commit (undone) and after it,
    # before the worker took the new disks and the memory: recovery has it do that.
    crash(d, "checkpoint.apply.after_step_0", "apply_checkpoint", "c1")
    c = restart(d)
    assert c.checkpoints(VM).current == c.checkpoint(VM, "c3").id
    wait_running(c)
    assert seen(c) == {"A", "B", "C"}
    crash(d, "checkpoint.apply.after_step_3", "apply_checkpoint", "c1")
    c = restart(d)
    assert c.checkpoints(VM).current == c.checkpoint(VM, "c1").id
    wait_running(c)
    assert seen(c) == {"A"}
    c.apply_checkpoint(VM, "c3", wait=True)
    wait_running(c)

    # The same with the worker killed too: the VM is Saved in the checkpoint's memory.
    crash(d, "checkpoint.apply.after_step_3", "apply_checkpoint", "c1")
    kill_worker(d)
    c = restart(d)
    wait_state(c, VmState.SAVED)
    c.start(VM, wait=True)
    wait_running(c)
    assert seen(c) == {"A"}
    c.apply_checkpoint(VM, "c3", wait=True)
    wait_running(c)

    # pyhvd dies while removing a checkpoint of the running VM, after the commit: the merges
    # left are done online when it is back.
    crash(d, "checkpoint.remove.after_step_2", "remove_checkpoint", "c2")
    c = restart(d)
    assert [n.name for n in c.checkpoints(VM).checkpoints] == ["c1", "c3"]
    del expected["c2"]

    # The same with the worker killed too: the merges left are done offline.
    wait_running(c)
    write(c, "D")
    c.create_checkpoint(VM, "c4", wait=True)
    crash(d, "checkpoint.remove.after_step_2", "remove_checkpoint", "c4")
    kill_worker(d)
    c = restart(d)
    assert [n.name for n in c.checkpoints(VM).checkpoints] == ["c1", "c3"]

    for name, files in expected.items():
        c.apply_checkpoint(VM, name, wait=True)
        wait_running(c)
        assert seen(c) == files, name
    c.turn_off(VM, wait=True)
    check_consistent(d, c)
