import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.errors import ConfigError, ConflictError, NotFoundError
from pyhv.host.resources import HostResources
from pyhv.inventory import Inventory
from pyhv.model import DiskAttachment, VmConfig, make_vm_config
from pyhv.paths import HomePaths

HOST = HostResources(cores=2, memory_mib=4096)


def inventory(home: Path) -> Inventory:
    return Inventory(HomePaths(home, run_root=home / "run"), host=HOST)


def test_create_get_list_remove(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    disk = tmp_path / "disk.vhdx"
    disk.write_bytes(b"keep me")
    a = inv.create(
        make_vm_config(name="a", scsi_controllers=[{"disks": [{"slot": 0, "path": str(disk)}]}])
    )
    b = inv.create(make_vm_config(name="b"))
    assert inv.get("a") == a
    assert inv.get(b.id) == b
    assert inv.get(b.id.upper()) == b
    assert [c.name for c in inv.list()] == ["a", "b"]
    stored = json.loads(inv.paths.vm_config(a.id).read_text())
    assert stored["name"] == "a"

    inv.paths.vm_console_log(a.id).parent.mkdir(parents=True)
    inv.paths.vm_console_log(a.id).write_text("boot")
    assert inv.remove("a") == a
    assert not inv.paths.vm_dir(a.id).exists()
    assert not inv.paths.vm_log_dir(a.id).exists()
    assert disk.read_bytes() == b"keep me"
    assert [c.name for c in inv.list()] == ["b"]
    with pytest.raises(NotFoundError, match="no VM named 'a'"):
        inv.get("a")
    with pytest.raises(NotFoundError):
        inv.remove("a")


def test_names_are_unique(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    inv.create(make_vm_config(name="a"))
    with pytest.raises(ConflictError, match="a VM named 'a' already exists"):
        inv.create(make_vm_config(name="a"))
    b = inv.create(make_vm_config(name="b"))
    b.name = "a"
    with pytest.raises(ConflictError):
        inv.save(b)
    assert inv.get(b.id).name == "b"


def test_save_is_atomic_and_revalidates(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    vm = inv.create(make_vm_config(name="a"))
    vm.name = "renamed"
    vm.notes = "hello"
    inv.save(vm)
    assert inv.get("renamed").notes == "hello"
    assert list(inv.paths.vm_dir(vm.id).iterdir()) == [inv.paths.vm_config(vm.id)]
    vm.scsi_controllers[0].disks.extend(
        [DiskAttachment(slot=1, path=Path("/d")), DiskAttachment(slot=1, path=Path("/e"))]
    )
    with pytest.raises(ConfigError, match="SCSI slot 1 is used twice"):
        inv.save(vm)


def test_update_is_read_modify_write(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    inv.create(make_vm_config(name="a"))

    def add_disk(config: VmConfig) -> None:
        config.scsi_controllers[0].disks.append(DiskAttachment(slot=2, path=Path("/d.vhdx")))

    updated = inv.update("a", add_disk)
    assert inv.get("a") == updated
    assert updated.disks()[0][1].slot == 2
    with pytest.raises(ConfigError, match="attached twice"):
        inv.update("a", lambda c: c.scsi_controllers.append(updated.scsi_controllers[0]))
    assert inv.get("a") == updated
    with pytest.raises(NotFoundError):
        inv.update("b", add_disk)


def _add_disks(home: str, first: int) -> None:
    inv = inventory(Path(home))
    for slot in range(first, first + 5):
        inv.update("shared", _adder(DiskAttachment(slot=slot, path=Path(f"/d{slot}"))))


def _adder(disk: DiskAttachment) -> Callable[[VmConfig], None]:
    def add(config: VmConfig) -> None:
        config.scsi_controllers[0].disks.append(disk)

    return add


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    inventory(tmp_path).create(make_vm_config(name="shared"))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_disks, args=(str(tmp_path), first)) for first in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    slots = sorted(d.slot for _, d in inventory(tmp_path).get("shared").disks())
    assert slots == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]


def test_host_limits_are_checked(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    with pytest.raises(ConfigError, match=r"processor count 3 exceeds the limit of 2 \(host has 2"):
        inv.create(make_vm_config(name="a", processor_count=3))
    vm = inv.create(make_vm_config(name="a", processor_count=2))
    vm.memory_startup_mib = 8192
    with pytest.raises(ConfigError, match="exceeds the limit of 4 GiB"):
        inv.save(vm)


def test_save_of_removed_vm(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    vm = inv.create(make_vm_config(name="a"))
    inv.remove(vm.id)
    with pytest.raises(NotFoundError):
        inv.save(vm)


def test_unreadable_configs_are_skipped(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    inv.create(make_vm_config(name="good"))
    broken = inv.paths.vm_config("0b8f7a4e-5d4c-4a1e-9f53-8a9a3b7c1d2e")
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    assert [c.name for c in inv.list()] == ["good"]


def _create_named(home: str, name: str, results: "multiprocessing.Queue[str]") -> None:
    try:
        inventory(Path(home)).create(make_vm_config(name=name))
        results.put("ok")
    except ConflictError:
        results.put("conflict")


def test_concurrent_creates_give_one_vm(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_create_named, args=(str(tmp_path), "same", results)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    outcomes = sorted(results.get(timeout=10) for _ in procs)
    assert outcomes == ["conflict", "conflict", "conflict", "ok"]
    assert len(inventory(tmp_path).list()) == 1
