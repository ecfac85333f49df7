"""The recovery planner over every crash point of every kind of operation.

A small model of the files plays each plan up to the crash (with the interrupted step's new
file half there), then the recovery; the result must be exactly the state before or after
the operation, with every image the tree or config names present and no orphaned file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from pyhv.checkpoints.journal import Journal
from pyhv.checkpoints.planner import Plan, disk_paths
from pyhv.checkpoints.recovery import Direction, plan_recovery
from pyhv.checkpoints.steps import (
    ApplyRunning,
    CopyFile,
    CreateDiff,
    Delete,
    MarkSaved,
    Merge,
    Step,
    SwapRunning,
    WriteConfig,
    WriteTree,
    created_files,
)
from pyhv.checkpoints.tree import CheckpointTree
from pyhv.model import VmConfig, VmState


@dataclass(frozen=True)
class World:
    files: frozenset[str]
    tree: CheckpointTree
    config: str
    saved: bool = False

    @classmethod
    def of(cls, sim: Any) -> World:
        files = set(sim.tree.images) | set(disk_paths(sim.config).values())
        files |= {c.memory_state for c in sim.tree.checkpoints if c.memory_state}
        return cls(frozenset(files), sim.tree, sim.config.model_dump_json())

    def run(self, step: Step, journal: Journal) -> World:
        if isinstance(step, SwapRunning):  # the memory's temporary name is gone when done
            made = {*step.disks.values(), *([step.memory] if step.memory else [])}
            return replace(self, files=self.files | made)
        if isinstance(step, CreateDiff | CopyFile):
            return replace(self, files=self.files | set(created_files(step)))
        if isinstance(step, MarkSaved):
            return replace(self, saved=True)
        if isinstance(step, ApplyRunning):  # the worker runs on the new children
            return self
        if isinstance(step, WriteTree):
            return replace(self, tree=journal.tree)
        if isinstance(step, WriteConfig):
            return replace(self, config=journal.vm_config().model_dump_json())
        if isinstance(step, Merge):
            assert step.into in self.files, "merging into a file that is gone"
            return replace(self, files=self.files - {step.child})
        assert isinstance(step, Delete)
        return replace(self, files=self.files - {step.path})

    def check_consistent(self, memory: set[str]) -> None:
        config_disks = set(disk_paths(VmConfig.model_validate_json(self.config)).values())
        needed = self.tree.referenced_images() | config_disks
        assert needed <= self.files, f"missing: {needed - self.files}"
        for path, parent in self.tree.images.items():
            assert path in self.files
            assert parent is None or parent in self.tree.images
        owned = {f for f in self.files if f.endswith((".avhdx", ".avhd"))}
        assert owned <= set(self.tree.images), f"orphans: {owned - set(self.tree.images)}"
        memory = memory | {c.memory_state for c in self.tree.checkpoints if c.memory_state}
        assert self.files - owned - set(self.tree.images) - config_disks <= memory


def with_memory(sim: Any, name: str) -> None:
    node = sim.tree.find(name, "vm1").model_copy(update={"memory_state": f"/m/{name}.bin"})
    rest = tuple(c for c in sim.tree.checkpoints if c.id != node.id)
    sim.tree = sim.tree.model_copy(update={"checkpoints": (*rest, node)})


def scenario_create_first(sim: Any) -> Callable[[], Plan]:
    return lambda: sim.create("c1")


def scenario_create_second(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    return lambda: sim.create("c2")


def scenario_apply(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    sim.create("c2")
    return lambda: sim.apply("c1")


def scenario_apply_with_memory(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    with_memory(sim, "c1")
    sim.create("c2")
    return lambda: sim.apply("c1")


def scenario_apply_live(sim: Any) -> Callable[[], Plan]:
    sim.create("c1", VmState.RUNNING)
    sim.create("c2", VmState.RUNNING)
    return lambda: sim.apply("c1", live=True)


def scenario_remove_merging(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    sim.create("c2")
    return lambda: sim.remove("c2")


def scenario_remove_root_of_branches(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    sim.create("c2")
    sim.apply("c1")
    sim.create("c3")
    return lambda: sim.remove("c1")


def scenario_remove_subtree(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    with_memory(sim, "c1")
    sim.create("c2")
    sim.apply("c1")
    return lambda: sim.remove("c1", subtree=True)


def scenario_create_running(sim: Any) -> Callable[[], Plan]:
    sim.create("c1")
    return lambda: sim.create("c2", VmState.RUNNING)


def scenario_create_saved(sim: Any) -> Callable[[], Plan]:
    return lambda: sim.create("c1", VmState.SAVED)


SCENARIOS = [
    scenario_create_first,
    scenario_create_running,
    scenario_create_saved,
    scenario_create_second,
    scenario_apply,
    scenario_apply_with_memory,
    scenario_apply_live,
    scenario_remove_merging,
    scenario_remove_root_of_branches,
    scenario_remove_subtree,
]


def replay(before: World, plan: Plan, done: int) -> tuple[World, Direction]:
    """Run ``plan`` up to a crash after ``done`` steps, then what recovery decides."""
    journal = Journal.of(plan)
    world = before
    for step in plan.steps[:done]:
        world = world.run(step, journal)
    if done < len(plan.steps) and (cut := created_files(plan.steps[done])):
        world = replace(world, files=world.files | set(cut))  # cut off while writing
    recovery = plan_recovery(journal.model_copy(update={"done": done}))
    for step in recovery.steps:
        world = world.run(step, journal)
    return world, recovery.direction


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_crash_at_every_step_recovers_to_before_or_after(
    sim: Any, scenario: Callable[[Any], Callable[[], Plan]]
) -> None:
    operation = scenario(sim)
    before = World.of(sim)
    memory = {c.memory_state for c in sim.tree.checkpoints if c.memory_state}
    plan = operation()
    after, _ = replay(before, plan, len(plan.steps))
    assert after.tree == plan.tree
    for done in range(len(plan.steps) + 1):
        world, direction = replay(before, plan, done)
        rolled_back = done < plan.commit
        assert direction == (Direction.BACK if rolled_back else Direction.FORWARD), done
        assert world == (before if rolled_back else after), f"crash after step {done}"
        world.check_consistent(memory | {"/s/memory.bin"})
