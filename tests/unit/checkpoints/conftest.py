"""Plans over a VM with two disks, built without touching a file (the planner is pure)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pyhv.checkpoints.planner import Moment, Plan, plan_apply, plan_create, plan_remove
from pyhv.checkpoints.tree import CheckpointTree, CheckpointType
from pyhv.model import DiskAttachment, ScsiController, VmConfig, VmState

BASES = ("/d/sys.vhdx", "/d/data.vhd")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def vm_config() -> VmConfig:
    disks = [DiskAttachment(slot=i, path=p) for i, p in enumerate(BASES)]  # type: ignore[arg-type]
    ro = DiskAttachment(slot=5, path="/d/iso-like.vhdx", read_only=True)  # type: ignore[arg-type]
    return VmConfig(name="vm1", scsi_controllers=[ScsiController(disks=[*disks, ro])])


class Sim:
    """A VM whose tree and config follow the plans, as the manager would leave them."""

    def __init__(self) -> None:
        self.tree = CheckpointTree()
        self.config = vm_config()
        self.clock = T0
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return str(uuid.UUID(int=self.n))

    def take(self, plan: Plan) -> Plan:
        self.tree, self.config = plan.tree, plan.config
        return plan

    def create(
        self,
        name: str,
        state: VmState = VmState.OFF,
        kind: CheckpointType = CheckpointType.STANDARD,
        saved_paused: bool = False,
    ) -> Plan:
        self.clock += timedelta(minutes=1)
        checkpoint_id = self._id()
        moment = Moment(state, f"/m/{checkpoint_id}.vmrs", "/s/memory.bin", saved_paused)
        plan = plan_create(
            self.tree,
            self.config,
            checkpoint_id=checkpoint_id,
            name=name,
            kind=kind,
            now=self.clock,
            moment=moment,
        )
        return self.take(plan)

    def apply(self, name: str, live: bool = False) -> Plan:
        target = self.tree.find(name, "vm1")
        plan = plan_apply(
            self.tree,
            self.config,
            target,
            image_id=self._id(),
            saved_state="/s/memory.bin",
            live=live,
        )
        return self.take(plan)

    def remove(self, name: str, subtree: bool = False) -> Plan:
        target = self.tree.find(name, "vm1")
        return self.take(plan_remove(self.tree, self.config, target, subtree=subtree))


@pytest.fixture
def sim() -> Sim:
    return Sim()


@pytest.fixture
def branched(sim: Sim) -> Sim:
    """c1 ─ c2, and c1 ─ c3 (current)."""
    sim.create("c1")
    sim.create("c2")
    sim.apply("c1")
    sim.create("c3")
    return sim


@pytest.fixture
def new_sim() -> Callable[[], Sim]:
    """For property tests, which need a fresh VM per example."""
    return Sim
