"""CPU policy arithmetic, admission, and the cgroup files each version writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import ConflictError
from pyhv.service.policies import (
    CgroupsV1,
    CgroupsV2,
    CpuSettings,
    ProcessorPolicy,
    admit_memory,
    admit_reserve,
    cpu_settings,
    detect_cgroups,
    reserved_cpus,
)


def test_limit_is_a_quota_of_the_vms_processors() -> None:
    assert cpu_settings(2, ProcessorPolicy(limit_percent=50)).quota_us == 100_000
    assert cpu_settings(4, ProcessorPolicy(limit_percent=25)).quota_us == 100_000
    assert cpu_settings(4, ProcessorPolicy()).quota_us is None


@pytest.mark.parametrize(
    ("weight", "shares"), [(100, 1024), (200, 2048), (1, 10), (10_000, 102_400)]
)
def test_weight_to_v1_shares(weight: int, shares: int) -> None:
    assert CpuSettings(None, 100_000, weight).v1_shares == shares


def test_reserve_admission_names_the_holders() -> None:
    assert reserved_cpus(2, ProcessorPolicy(reserve_percent=50)) == 1.0
    admit_reserve("c", 1.0, 2, {"a": 0.5, "b": 0.5})
    admit_reserve("c", 0.0, 2, {"a": 2.0})
    with pytest.raises(ConflictError, match=r"reserved by a \(1\.5\), b \(0\.5\)") as err:
        admit_reserve("c", 0.5, 2, {"a": 1.5, "b": 0.5, "idle": 0.0})
    assert "cannot reserve 0.5 processors for c" in str(err.value)


def test_memory_admission() -> None:
    admit_memory("a", 512, 512)
    with pytest.raises(ConflictError, match="needs 1024 MiB and the host has 512 MiB"):
        admit_memory("a", 1024, 512)


def test_cgroups_v1_files(tmp_path: Path) -> None:
    cg = CgroupsV1(tmp_path)
    cg.apply("vm1", cpu_settings(2, ProcessorPolicy(limit_percent=50, weight=200)))
    d = tmp_path / "pyhv" / "vm1"
    assert (d / "cpu.cfs_period_us").read_text() == "100000"
    assert (d / "cpu.cfs_quota_us").read_text() == "100000"
    assert (d / "cpu.shares").read_text() == "2048"
    cg.apply("vm1", cpu_settings(2, ProcessorPolicy()))
    assert (d / "cpu.cfs_quota_us").read_text() == "-1"
    cg.attach("vm1", [42])
    assert (d / "cgroup.procs").read_text() == "42"
    (d / "cgroup.procs").unlink()
    for name in ("cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"):
        (d / name).unlink()
    cg.remove("vm1")
    assert not d.exists()
    cg.remove("vm1")  # already gone: fine


def test_cgroups_v2_files(tmp_path: Path) -> None:
    cg = CgroupsV2(tmp_path)
    cg.apply("vm1", cpu_settings(1, ProcessorPolicy(limit_percent=20, weight=300)))
    d = tmp_path / "pyhv" / "vm1"
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == "300"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"


def test_detect(tmp_path: Path) -> None:
    assert detect_cgroups(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.shares").write_text("1024")
    assert isinstance(detect_cgroups(tmp_path), CgroupsV1)
    (tmp_path / "cgroup.controllers").write_text("cpu")
    assert isinstance(detect_cgroups(tmp_path), CgroupsV2)


def test_stop_op_for_the_host_shutdown() -> None:
    from pyhv.model import AutomaticStopAction, VmState
    from pyhv.service.commands import Power
    from pyhv.service.host_actions import stop_op

    assert stop_op(AutomaticStopAction.SAVE, VmState.PAUSED) is Power.SAVE
    assert stop_op(AutomaticStopAction.SHUTDOWN, VmState.RUNNING) is Power.STOP
    assert stop_op(AutomaticStopAction.SHUTDOWN, VmState.PAUSED) is Power.TURN_OFF
    assert stop_op(AutomaticStopAction.TURN_OFF, VmState.RUNNING) is Power.TURN_OFF
