"""Plans and recovery for checkpoints of a running, paused or saved VM (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from pyhv.checkpoints.journal import Journal
from pyhv.checkpoints.planner import disk_paths
from pyhv.checkpoints.recovery import Direction, plan_recovery
from pyhv.checkpoints.steps import CopyFile, CreateDiff, MarkSaved, SwapRunning
from pyhv.checkpoints.tree import CheckpointType
from pyhv.errors import StateError
from pyhv.model import VmState


def test_a_running_vm_swaps_in_the_worker_and_saves_memory(sim: Any) -> None:
    plan = sim.create("c1", VmState.RUNNING)
    node = plan.tree.find("c1", "vm1")
    step = plan.steps[0]
    assert isinstance(step, SwapRunning) and plan.commit == 1
    assert step.disks == disk_paths(plan.config)
    assert step.memory == node.memory_state and not step.freeze
    assert node.vm_state == VmState.RUNNING


def test_a_production_checkpoint_freezes_and_keeps_no_memory(sim: Any) -> None:
    plan = sim.create("c1", VmState.RUNNING, CheckpointType.PRODUCTION)
    step = plan.steps[0]
    assert isinstance(step, SwapRunning) and step.freeze and step.memory is None
    assert plan.tree.find("c1", "vm1").vm_state == VmState.OFF
    with pytest.raises(StateError, match=r"Paused.*resume it"):
        sim.create("c2", VmState.PAUSED, CheckpointType.PRODUCTION)


def test_a_saved_vm_copies_its_saved_state(sim: Any) -> None:
    plan = sim.create("c1", VmState.SAVED)
    node = plan.tree.find("c1", "vm1")
    assert [type(s) for s in plan.steps[: plan.commit]] == [CreateDiff, CreateDiff, CopyFile]
    assert node.memory_state is not None and node.vm_state == VmState.SAVED
    apply = sim.apply("c1")
    assert MarkSaved() in apply.steps[apply.commit :]


def test_a_cut_off_swap_rolls_back_unless_the_worker_swapped(sim: Any) -> None:
    sim.create("c1")
    plan = sim.create("c2", VmState.RUNNING)
    step = plan.steps[0]
    assert isinstance(step, SwapRunning) and step.memory is not None
    journal = Journal.of(plan, online=True)
    back = plan_recovery(journal)
    assert back.direction == Direction.BACK
    deleted = {s.path for s in back.steps}  # type: ignore[union-attr]
    assert deleted == {*step.disks.values(), step.memory, f"{step.memory}.partial"}

    node_id = plan.tree.find("c2", "vm1").id
    swapped = journal.swapped(node_id, memory_saved=False, paused_ms=None)
    forward = plan_recovery(swapped)
    assert forward.direction == Direction.FORWARD and forward.steps == plan.steps[1:]
    assert swapped.tree.get(node_id).memory_state is None  # no whole memory file: disks only
    kept = journal.swapped(node_id, memory_saved=True, paused_ms=12.5).tree.get(node_id)
    assert kept.memory_state == step.memory and kept.paused_ms == 12.5
