"""Disk and DVD changes on VMs that are not running: vm.json only, every bad request refused
with one line and nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhv.errors import ConfigError, ConflictError, NotFoundError, StateError, UsageError
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.paths import HomePaths
from pyhv.storage import CreateSpec, create_image
from pyhv.units import MiB
from pyhv.worker.local import LocalHost
from pyhv.worker.local_disks import LocalDisks
from pyhv.worker.status_file import write_status


@pytest.fixture
def host(paths: HomePaths) -> LocalHost:
    local = LocalHost(paths)
    local.inventory.create(VmConfig(name="a"))
    local.inventory.create(VmConfig(name="b"))
    return local


@pytest.fixture
def disks(host: LocalHost) -> LocalDisks:
    return LocalDisks(host)


@pytest.fixture
def image(paths: HomePaths) -> Path:
    path = paths.home / "d.vhdx"
    create_image(path, CreateSpec(size=4 * MiB))
    return path


def test_add_picks_the_first_free_slot_and_records_qos(
    disks: LocalDisks, host: LocalHost, image: Path, paths: HomePaths
) -> None:
    raw = paths.home / "r.img"
    raw.write_bytes(bytes(MiB))
    assert disks.add("a", image) == (0, 0)
    assert disks.add("a", raw, max_iops=100, max_bytes_per_sec=MiB) == (0, 1)
    second = host.get("a").scsi_controllers[0].disks[1]
    assert (second.path, second.max_iops, second.max_bytes_per_sec) == (raw, 100, MiB)
    disks.set_qos("a", 0, 1, None, 0)  # None keeps, 0 lifts
    second = host.get("a").scsi_controllers[0].disks[1]
    assert (second.max_iops, second.max_bytes_per_sec) == (100, None)
    assert disks.remove("a", 0, 0).path == image
    assert [d.slot for _, d in host.get("a").disks()] == [1]


def test_a_disk_on_a_new_controller_adds_the_controllers(
    disks: LocalDisks, host: LocalHost, image: Path
) -> None:
    assert disks.add("a", image, controller=3, slot=255) == (3, 255)
    assert len(host.get("a").scsi_controllers) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"controller": 4}, ConfigError, "SCSI controller 4 is outside 0–3"),
        ({"slot": 256}, ConfigError, "SCSI slot 256 is outside 0–255"),
        ({"max_iops": -1}, ConfigError, "max_iops: input should be greater than 0"),
    ],
)
def test_bad_positions_and_limits(
    disks: LocalDisks, host: LocalHost, image: Path, kwargs: dict, error: type, message: str
) -> None:
    before = host.get("a")
    with pytest.raises(error, match=message):
        disks.add("a", image, **kwargs)
    assert host.get("a") == before


def test_conflicts(disks: LocalDisks, host: LocalHost, image: Path, paths: HomePaths) -> None:
    disks.add("a", image)
    other = paths.home / "e.vhdx"
    create_image(other, CreateSpec(size=4 * MiB))
    with pytest.raises(ConflictError, match=f"slot 0:0 of VM 'a' is taken by {image}"):
        disks.add("a", other, slot=0)
    with pytest.raises(ConflictError, match=r"already attached to VM 'a' \(SCSI 0:0\)"):
        disks.add("a", image, slot=5)
    with pytest.raises(ConflictError, match=r"attached to VM 'a' \(SCSI 0:0\); remove it there"):
        disks.add("b", image)
    disks.set_dvd("a", image)  # any file serves as an ISO
    with pytest.raises(ConflictError, match="taken by the DVD drive"):
        disks.add("a", other, slot=255)


def test_files_that_are_not_disks(disks: LocalDisks, paths: HomePaths) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        disks.add("a", paths.home / "missing.vhdx")
    text = paths.home / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(UsageError, match=r"notes\.txt is not a disk image"):
        disks.add("a", text)
    fake = paths.home / "fake.vhd"
    fake.write_bytes(bytes(MiB))
    with pytest.raises(UsageError, match="not a VHD file"):
        disks.add("a", fake)


def test_missing_disks_and_drives(disks: LocalDisks) -> None:
    with pytest.raises(NotFoundError, match="VM 'a' has no disk in SCSI slot 0:7"):
        disks.remove("a", 0, 7)
    with pytest.raises(NotFoundError, match="VM 'a' has no DVD drive"):
        disks.set_dvd("a", None)
    with pytest.raises(NotFoundError, match="no VM named 'zz'"):
        disks.rows("zz")


def test_dvd_insert_and_eject(disks: LocalDisks, host: LocalHost, image: Path) -> None:
    disks.set_dvd("a", image)
    dvd = host.get("a").dvd
    assert dvd is not None and (dvd.controller, dvd.slot, dvd.path) == (0, 255, image)
    disks.set_dvd("a", None)
    dvd = host.get("a").dvd
    assert dvd is not None and dvd.path is None


def test_a_saved_vm_keeps_its_devices(disks: LocalDisks, host: LocalHost, image: Path) -> None:
    vm_id = host.get("a").id
    saved = host.paths.vm_saved_state(vm_id)
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"memory")
    write_status(host.paths.vm_status(vm_id), VmStatus(state=VmState.SAVED))
    with pytest.raises(StateError, match="cannot attach a disk to VM 'a': it is Saved"):
        disks.add("a", image)


def test_rows_read_the_images(disks: LocalDisks, image: Path) -> None:
    disks.add("a", image)
    _, rows = disks.rows("a")
    assert [(r.controller, r.slot, r.error) for r in rows] == [(0, 0, None)]
    assert rows[0].info is not None and rows[0].info.size == 4 * MiB
    assert rows[0].stats is None
    image.unlink()
    _, rows = disks.rows("a")
    assert rows[0].info is None and rows[0].error is not None and "no such file" in rows[0].error
