"""Kill a checkpoint operation (exit 137, as kill -9) after several journal steps; recovery
must leave the VM and its tree consistent, and every checkpoint must still apply."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from pyhv.checkpoints.journal import load_journal
from pyhv.checkpoints.steps import Merge
from pyhv.storage import open_image
from pyhv.storage.operations.merge import KeepsIdentity

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VM = "cpvm"

CHILD = """
import sys
from pyhv.checkpoints import CheckpointManager

op, vm, name, *flags = sys.argv[1:]
manager = CheckpointManager()
if op == "create":
    manager.create(vm, name)
elif op == "apply":
    manager.apply(vm, name)
else:
    manager.remove(vm, name, subtree="--subtree" in flags)
"""


def crash(off_vm: Any, op: str, name: str, step: int, *flags: str) -> None:
    env = {**os.environ, "PYHV_HOME": str(off_vm.home)}
    env["PYHV_FAILPOINT"] = f"checkpoint.{op}.after_step_{step}"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, op, VM, name, *flags], env=env, capture_output=True
    )
    assert done.returncode == 137, done.stderr.decode()


def setup_tree(off_vm: Any) -> dict[str, str]:
    """c1 ─ c2 and c1 ─ c3, current under c3; returns what each checkpoint shows."""
    m, states = off_vm.manager, {}
    off_vm.write("A")
    m.create(VM, "c1")
    states["c1"] = off_vm.state()
    off_vm.write("B")
    m.create(VM, "c2")
    states["c2"] = off_vm.state()
    m.apply(VM, "c1")
    off_vm.write("C")
    m.create(VM, "c3")
    states["c3"] = off_vm.state()
    off_vm.write("D")
    return states


def assert_recovers(off_vm: Any, states: dict[str, str]) -> None:
    off_vm.manager.recover(VM)
    off_vm.check()
    _, tree = off_vm.manager.tree(VM)
    names = {c.name for c in tree.checkpoints}
    assert names <= set(states)
    for name in sorted(names):
        off_vm.manager.apply(VM, name)
        assert off_vm.state() == states[name], name
    off_vm.check()


@pytest.mark.parametrize("step", [0, 1, 2, 3, 4])
def test_crash_in_create(off_vm: Any, step: int) -> None:
    states = setup_tree(off_vm)
    states["new"] = off_vm.state()
    crash(off_vm, "create", "new", step)
    assert_recovers(off_vm, states)
    _, tree = off_vm.manager.tree(VM)
    assert ("new" in {c.name for c in tree.checkpoints}) == (step >= 2)  # 2 disks = 2 creates


@pytest.mark.parametrize("step", [1, 2, 3, 5])
def test_crash_in_apply(off_vm: Any, step: int) -> None:
    states = setup_tree(off_vm)
    now = off_vm.state()
    crash(off_vm, "apply", "c2", step)
    off_vm.manager.recover(VM)
    assert off_vm.state() == (states["c2"] if step >= 2 else now)
    assert_recovers(off_vm, states)


@pytest.mark.parametrize(("name", "step"), [("c1", 1), ("c1", 2), ("c3", 1), ("c3", 3)])
def test_crash_in_remove(off_vm: Any, name: str, step: int) -> None:
    states = setup_tree(off_vm)
    now = off_vm.state()
    crash(off_vm, "remove", name, step)
    off_vm.manager.recover(VM)
    assert off_vm.state() == now  # removing never changes what the VM shows
    del states[name]
    assert_recovers(off_vm, states)


def test_crash_in_remove_subtree(off_vm: Any) -> None:
    setup_tree(off_vm)
    now = off_vm.state()
    crash(off_vm, "remove", "c1", 3, "--subtree")
    off_vm.manager.recover(VM)
    _, tree = off_vm.manager.tree(VM)
    assert tree.checkpoints == ()
    assert off_vm.state() == now and off_vm.files() == off_vm.bases
    off_vm.check()


def test_crash_in_the_middle_of_a_merge(off_vm: Any) -> None:
    off_vm.write("A")
    off_vm.manager.create(VM, "c1")
    off_vm.write("B")
    now = off_vm.state()
    crash(off_vm, "remove", "c1", 2)  # tree and config written, the merges not yet run
    folder = off_vm.manager.paths.vm_checkpoints_dir(off_vm.inventory.get(VM).id)
    journal = load_journal(folder / "journal.json")
    assert journal is not None
    steps = journal.steps
    merge = next(s for s in steps if isinstance(s, Merge) and s.into.endswith(".vhdx"))
    with open_image(merge.child) as child, open_image(merge.into, writable=True) as target:
        assert isinstance(target, KeepsIdentity)
        target.keep_identity = True  # as merge_image does, so the child stays linked
        target.write(0, child.read(0, 1 << 20))  # what a merge does first, then: kill -9
    off_vm.manager.recover(VM)
    assert off_vm.state() == now
    off_vm.check()
