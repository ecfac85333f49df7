"""Pure checks of disk changes against a VM configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import ConfigError, ConflictError
from pyhv.model import DiskAttachment, make_vm_config
from pyhv.worker import disk_edit


def test_free_slot_skips_disks_and_the_dvd_drive() -> None:
    config = make_vm_config(
        name="web",
        scsi_controllers=[{"disks": [{"slot": 0, "path": "/a"}, {"slot": 2, "path": "/b"}]}],
        dvd={"slot": 1},
    )
    assert disk_edit.free_slot(config, 0) == 3
    assert disk_edit.free_slot(config, 2) == 0
    assert disk_edit.slot_user(config, 0, 1) == "the DVD drive"


def test_a_full_controller_has_no_free_slot() -> None:
    disks = [{"slot": s, "path": f"/d{s}"} for s in range(256)]
    config = make_vm_config(name="web", scsi_controllers=[{"disks": disks}])
    with pytest.raises(ConflictError, match="SCSI controller 0 of VM 'web' has no free slot"):
        disk_edit.free_slot(config, 0)


def test_a_running_vm_gets_no_new_controller() -> None:
    config = make_vm_config(name="web")
    disk = DiskAttachment(slot=0, path=Path("/d"))
    with pytest.raises(ConfigError, match="controller 2 can be added only while it is Off"):
        disk_edit.add_disk(config, 2, disk, running=True)
    disk_edit.add_disk(config, 2, disk, running=False)
    assert len(config.scsi_controllers) == 3


def test_the_same_file_by_another_name_is_the_same_disk(tmp_path: Path) -> None:
    (tmp_path / "real.vhdx").write_bytes(b"")
    (tmp_path / "link.vhdx").symlink_to(tmp_path / "real.vhdx")
    config = make_vm_config(
        name="web", scsi_controllers=[{"disks": [{"slot": 0, "path": tmp_path / "real.vhdx"}]}]
    )
    assert disk_edit.attached_at(config, tmp_path / "link.vhdx") == (0, 0)
    assert disk_edit.users_elsewhere([config], "other-id", tmp_path / "link.vhdx") == [
        ("web", 0, 0)
    ]
    assert disk_edit.users_elsewhere([config], config.id, tmp_path / "link.vhdx") == []
