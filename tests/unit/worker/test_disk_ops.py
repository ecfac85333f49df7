"""The worker's live storage ops send QEMU what QEMU 7.2 expects, and keep the worker's copy of
the configuration in step."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pyhv.errors import NotFoundError, StateError
from pyhv.model import VmState, VmStatus, make_vm_config
from pyhv.worker.disk_ops import DiskOps


class RecordingQmp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any] | None]] = []

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.sent.append((cmd, args))
        return {}


def ops(state: VmState = VmState.RUNNING, **config: Any) -> tuple[DiskOps, RecordingQmp]:
    qmp = RecordingQmp()
    worker = SimpleNamespace(
        config=make_vm_config(name="web", **config), status=VmStatus(state=state), qmp=qmp
    )
    return DiskOps(cast(Any, worker)), qmp


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_set_qos_changes_the_throttle_group_live() -> None:
    disk_ops, qmp = ops(scsi_controllers=[{}, {"disks": [{"slot": 3, "path": "/d.vhdx"}]}])
    run(disk_ops.disk_set_qos({"controller": 1, "slot": 3, "max_iops": 200}))
    assert qmp.sent == [
        (
            "qom-set",
            {
                "path": "/objects/tg1-3",
                "property": "limits",
                "value": {"iops-total": 200, "bps-total": 0},
            },
        )
    ]
    disk = disk_ops.w.config.scsi_controllers[1].disks[0]
    assert (disk.max_iops, disk.max_bytes_per_sec) == (200, None)
    with pytest.raises(NotFoundError, match="VM 'web' has no disk in SCSI slot 1:4"):
        run(disk_ops.disk_set_qos({"controller": 1, "slot": 4}))


def test_dvd_set_plugs_a_drive_when_there_is_none_and_eject_empties_it() -> None:
    disk_ops, qmp = ops()
    run(disk_ops.dvd_set({"path": "/iso/setup.iso"}))
    assert [cmd for cmd, _ in qmp.sent] == ["device_add", "blockdev-change-medium"]
    assert qmp.sent[0][1] == {
        "driver": "scsi-cd",
        "id": "dvd0",
        "bus": "scsi0.0",
        "scsi-id": 255,
        "lun": 0,
    }
    dvd = disk_ops.w.config.dvd
    assert dvd is not None and str(dvd.path) == "/iso/setup.iso"
    run(disk_ops.dvd_set({"path": "/iso/other.iso"}))
    assert [cmd for cmd, _ in qmp.sent][2:] == ["blockdev-change-medium"]
    run(disk_ops.dvd_eject({}))
    assert qmp.sent[-1] == ("eject", {"id": "dvd0", "force": True})
    assert dvd.path is None


def test_ops_need_a_running_vm() -> None:
    disk_ops, qmp = ops(VmState.STARTING)
    with pytest.raises(StateError, match="cannot eject the DVD of VM 'web': it is Starting"):
        run(disk_ops.dvd_eject({}))
    assert qmp.sent == []
