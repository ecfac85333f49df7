from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pyhv.checkpoints.planner import child_path, default_name, disk_paths
from pyhv.checkpoints.steps import CopyFile, CreateDiff, Delete, Merge, WriteConfig, WriteTree
from pyhv.checkpoints.tree import MAX_NAME_LENGTH, CheckpointTree
from pyhv.errors import StateError, UnsupportedFeature

ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_child_sits_beside_its_parent_in_the_same_format_named_by_id() -> None:
    assert child_path("/d/sys.vhdx", ID) == f"/d/sys_{ID.upper()}.avhdx"
    assert child_path(f"/d/sys_{ID.upper()}.avhdx", "0" * 8 + "-0000-0000-0000-" + "0" * 12) == (
        "/d/sys_00000000-0000-0000-0000-000000000000.avhdx"
    )
    assert child_path("/d/data.vhd", ID) == f"/d/data_{ID.upper()}.avhd"
    with pytest.raises(UnsupportedFeature, match="convert"):
        child_path("/d/raw.img", ID)


def test_default_name_is_numbered_when_taken(sim: Any) -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert default_name(CheckpointTree(), "vm1", now) == "vm1 - (2026-03-04 05:06:07)"
    sim.create("vm1 - (2026-03-04 05:06:07)")
    assert default_name(sim.tree, "vm1", now) == "vm1 - (2026-03-04 05:06:07) (2)"


def test_default_name_of_a_vm_with_a_long_name_is_not_refused(sim: Any) -> None:
    """A VM's name may be 100 characters: "VM - (date time)" was then over the limit and
    ``pyhv checkpoint new`` without --name failed."""
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    vm_name = "v" * MAX_NAME_LENGTH
    first = default_name(sim.tree, vm_name, now)
    assert len(first) == MAX_NAME_LENGTH and first.endswith("v - (2026-03-04 05:06:07)")
    sim.create(first)
    second = default_name(sim.tree, vm_name, now)
    assert len(second) == MAX_NAME_LENGTH and second.endswith(" - (2026-03-04 05:06:07) (2)")
    sim.create(second)


def test_create_freezes_writable_disks_and_continues_in_children(sim: Any) -> None:
    before = disk_paths(sim.config)
    plan = sim.create("c1")
    node = plan.tree.find("c1", "vm1")
    assert node.disks == before
    assert "0:5" not in node.disks  # read-only disks are not checkpointed
    new = disk_paths(plan.config)
    assert plan.steps == [
        CreateDiff(path=new["0:0"], parent=before["0:0"]),
        CreateDiff(path=new["0:1"], parent=before["0:1"]),
        WriteTree(),
        WriteConfig(),
    ]
    assert plan.commit == 2
    assert new["0:0"].endswith(".avhdx") and new["0:1"].endswith(".avhd")
    assert plan.tree.current == node.id


def test_create_refuses_when_the_vm_writes_into_a_frozen_image(sim: Any) -> None:
    sim.create("c1")
    sim.config = sim.config.model_copy(deep=True)
    frozen = sim.tree.find("c1", "vm1").disks["0:0"]
    sim.config.scsi_controllers[0].disks[0].path = frozen
    with pytest.raises(StateError, match="read-only image"):
        sim.create("c2")


def test_apply_discards_the_current_disks_and_restores_the_config(sim: Any) -> None:
    sim.create("c1")
    sim.config = sim.config.model_copy(update={"memory_startup_mib": 1024, "name": "renamed"})
    current = disk_paths(sim.config)
    plan = sim.apply("c1")
    c1 = plan.tree.find("c1", "vm1")
    assert plan.config.memory_startup_mib == 512 and plan.config.name == "renamed"
    new = disk_paths(plan.config)
    assert plan.steps[:2] == [
        CreateDiff(path=new["0:0"], parent=c1.disks["0:0"]),
        CreateDiff(path=new["0:1"], parent=c1.disks["0:1"]),
    ]
    assert set(plan.steps[4:]) == {Delete(path=p) for p in current.values()}
    assert plan.tree.current == c1.id


def test_apply_of_a_checkpoint_with_memory_copies_it_to_the_saved_state(sim: Any) -> None:
    sim.create("c1")
    node = sim.tree.find("c1", "vm1").model_copy(update={"memory_state": "/m/c1.bin"})
    sim.tree = sim.tree.model_copy(update={"checkpoints": (node,)})
    plan = sim.apply("c1")
    assert CopyFile(src="/m/c1.bin", dst="/s/memory.bin") in plan.steps[: plan.commit]


def test_remove_the_only_checkpoint_merges_the_current_disk_back_into_the_base(sim: Any) -> None:
    base = disk_paths(sim.config)
    sim.create("c1")
    current = disk_paths(sim.config)
    plan = sim.remove("c1")
    assert plan.commit == 0
    assert plan.steps[:2] == [WriteTree(), WriteConfig()]
    assert set(plan.steps[2:]) == {Merge(child=current[k], into=base[k]) for k in base}
    assert disk_paths(plan.config) == base
    assert plan.tree.checkpoints == ()
    assert plan.tree.images == {p: None for p in base.values()}


def test_remove_of_a_shared_parent_keeps_its_image_for_both_branches(branched: Any) -> None:
    c1 = branched.tree.find("c1", "vm1")
    plan = branched.remove("c1")
    assert [s for s in plan.steps if isinstance(s, Merge | Delete)] == []
    assert all(p in plan.tree.images for p in c1.disks.values())


def test_remove_subtree_drops_the_branch_and_its_memory(branched: Any) -> None:
    c2 = branched.tree.find("c2", "vm1").model_copy(update={"memory_state": "/m/c2.bin"})
    others = tuple(c for c in branched.tree.checkpoints if c.id != c2.id)
    branched.tree = branched.tree.model_copy(update={"checkpoints": (*others, c2)})
    plan = branched.remove("c2", subtree=True)
    deleted = {s.path for s in plan.steps if isinstance(s, Delete)}
    assert set(c2.disks.values()) <= deleted and "/m/c2.bin" in deleted


def test_a_disk_the_user_detached_is_never_deleted(sim: Any) -> None:
    sim.create("c1")
    detached = disk_paths(sim.config)["0:1"]
    sim.config = sim.config.model_copy(deep=True)
    del sim.config.scsi_controllers[0].disks[1]
    plan = sim.apply("c1")
    assert detached not in {getattr(s, "path", None) for s in plan.steps}
    assert detached in plan.tree.images
    assert not [s for s in sim.remove("c1").steps if getattr(s, "child", None) == detached]


def test_a_detached_disk_is_not_merged_into_its_parent_once_nothing_else_reads_it(
    sim: Any,
) -> None:
    """Its data was kept, but in the parent: the file `pyhv vm disk remove` said stays was
    gone after the checkpoints were removed."""
    sim.create("c1")
    detached = disk_paths(sim.config)["0:1"]
    sim.config = sim.config.model_copy(deep=True)
    del sim.config.scsi_controllers[0].disks[1]
    sim.create("c2")
    plan = sim.remove("c1", subtree=True)
    assert not [s for s in plan.steps if getattr(s, "child", None) == detached]
    assert detached not in {getattr(s, "path", None) for s in plan.steps}
    assert plan.tree.images[detached] == "/d/data.vhd"
