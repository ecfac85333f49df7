"""Plans and recovery for checkpoints of a running, paused or saved VM (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from pyhv.checkpoints.journal import Journal
from pyhv.checkpoints.planner import applies_live, disk_paths
from pyhv.checkpoints.recovery import Direction, plan_recovery
from pyhv.checkpoints.steps import (
    ApplyRunning,
    CopyFile,
    CreateDiff,
    Delete,
    MarkSaved,
    SwapRunning,
    WriteConfig,
    WriteTree,
)
from pyhv.checkpoints.tree import CheckpointType
from pyhv.errors import StateError
from pyhv.model import VmConfig, VmState


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


def test_a_checkpoint_of_a_paused_vm_comes_back_paused(sim: Any) -> None:
    plan = sim.create("c1", VmState.PAUSED)
    assert plan.tree.find("c1", "vm1").resumes_paused
    assert MarkSaved(paused=True) in sim.apply("c1").steps
    assert not sim.create("c2", VmState.RUNNING).tree.find("c2", "vm1").resumes_paused


def test_a_saved_vm_checkpoint_keeps_the_run_state_of_its_saved_state(sim: Any) -> None:
    assert sim.create("c1", VmState.SAVED, saved_paused=True).tree.find("c1", "vm1").resumes_paused
    assert not sim.create("c2", VmState.SAVED).tree.find("c2", "vm1").resumes_paused
    off = sim.create("c3", VmState.OFF, saved_paused=True).tree.find("c3", "vm1")
    assert not off.resumes_paused  # no memory, nothing to resume


def test_a_live_apply_commits_then_has_the_worker_take_disks_and_memory(sim: Any) -> None:
    sim.create("c1", VmState.PAUSED)
    sim.create("c2", VmState.RUNNING)
    before = disk_paths(sim.config)
    plan = sim.apply("c1", live=True)
    node = plan.tree.find("c1", "vm1")
    kinds = [type(s) for s in plan.steps]
    assert kinds[: plan.commit] == [CreateDiff, CreateDiff]
    assert kinds[plan.commit : plan.commit + 3] == [WriteTree, WriteConfig, ApplyRunning]
    assert CopyFile not in kinds and MarkSaved not in kinds
    step = plan.steps[plan.commit + 2]
    assert isinstance(step, ApplyRunning)
    assert step.disks == disk_paths(plan.config) and step.memory == node.memory_state
    assert step.paused
    # the disks the old QEMU wrote go only once the worker runs on the new ones
    assert {s.path for s in plan.steps if isinstance(s, Delete)} == set(before.values())


def test_only_a_live_checkpoint_with_the_same_devices_applies_live(sim: Any) -> None:
    sim.create("off")
    sim.create("saved", VmState.SAVED)
    sim.create("paused", VmState.PAUSED)
    sim.create("production", VmState.RUNNING, CheckpointType.PRODUCTION)
    tree, config = sim.tree, sim.config
    assert applies_live(config, tree.find("paused", "vm1"))
    renamed = config.model_copy(update={"name": "other", "notes": "moved"})
    assert applies_live(renamed, tree.find("paused", "vm1"))
    for name in ("off", "saved", "production"):
        assert not applies_live(config, tree.find(name, "vm1")), name
    bigger = config.model_copy(update={"memory_startup_mib": 1024})
    assert not applies_live(bigger, tree.find("paused", "vm1"))
    data = config.model_dump(mode="json")
    data["scsi_controllers"][0]["disks"].append({"slot": 9, "path": "/d/x.vhdx"})
    assert not applies_live(VmConfig.model_validate(data), tree.find("paused", "vm1"))
