"""pyhvd's disk and DVD changes with a fake worker: vm.json and pyhvd's view change together,
every bad request is refused with one line and nothing changed, a running VM gets the change
from its worker, and a change waits for no job: it is refused while one works on the VM."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pyhv.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDenied,
    StateError,
    UsageError,
)
from pyhv.host.resources import HostResources
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.model.limits import MAX_QOS_LIMIT
from pyhv.paths import HomePaths
from pyhv.service.confine import StorageRoots
from pyhv.service.disks import DiskService
from pyhv.service.events import EventBus
from pyhv.service.jobs import JobContext, Jobs
from pyhv.service.manager import VmManager
from pyhv.service.schemas import DiskAdd, DiskQos
from pyhv.storage import CreateSpec, create_image
from pyhv.units import MiB
from pyhv.worker.status_file import write_status

pytestmark = pytest.mark.anyio

HOST = HostResources(cores=2, memory_mib=4096)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeWorkers:
    """Records the control ops a running VM's worker is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    def call(
        self, config: VmConfig, op: str, timeout_s: float, args: dict[str, Any] | None = None
    ) -> Any:
        self.calls.append((op, args))
        return {"stats": {"disks": {"0:0": {"read_ops": 7}}}} if op == "stats" else {}


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[VmManager]:
    paths = HomePaths(tmp_path, run_root=tmp_path / "run")
    events = EventBus()
    m = VmManager(
        Inventory(paths, HOST),
        events,
        Jobs(events),
        StorageRoots([tmp_path / "disks"]),
        HOST,
        FakeWorkers(),  # type: ignore[arg-type]
        None,
    )
    await m.start()
    for name in ("a", "b"):
        m.inventory.create(VmConfig(name=name))
    await m.refresh()
    yield m
    await m.jobs.close()
    await m.close()


@pytest.fixture
def disks(manager: VmManager) -> DiskService:
    return DiskService(manager)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "disks").mkdir()
    path = tmp_path / "disks" / "d.vhdx"
    create_image(path, CreateSpec(size=4 * MiB))
    return path


def add(path: Path, **kwargs: Any) -> DiskAdd:
    return DiskAdd(path=str(path), **kwargs)


def stored(m: VmManager, name: str) -> VmConfig:
    """vm.json, checked to be what pyhvd shows."""
    config = m.inventory.get(name)
    assert m.get(name).config == config
    return config


async def test_add_qos_remove_keep_vm_json_and_the_view_in_step(
    manager: VmManager, disks: DiskService, image: Path
) -> None:
    raw = image.with_name("r.img")
    raw.write_bytes(bytes(MiB))
    assert (await disks.add("a", add(image))).slot == 0
    added = await disks.add("a", add(raw, max_iops=100, max_bytes_per_sec=MiB))
    assert (added.controller, added.slot) == (0, 1)
    second = stored(manager, "a").scsi_controllers[0].disks[1]
    assert (second.path, second.max_iops, second.max_bytes_per_sec) == (raw, 100, MiB)
    changed = await disks.set_qos("a", 0, 1, DiskQos(max_bytes_per_sec=0))  # absent keeps
    assert (changed.disk.max_iops, changed.disk.max_bytes_per_sec) == (100, None)
    assert stored(manager, "a").scsi_controllers[0].disks[1] == changed.disk
    assert (await disks.remove("a", 0, 0)).disk.path == image
    assert [d.slot for _, d in stored(manager, "a").disks()] == [1]
    assert not manager.supervisor.calls  # type: ignore[attr-defined]


async def test_a_disk_on_a_new_controller_adds_the_controllers(
    manager: VmManager, disks: DiskService, image: Path
) -> None:
    assert (await disks.add("a", add(image, controller=3, slot=255))).slot == 255
    assert len(stored(manager, "a").scsi_controllers) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"controller": 4}, ConfigError, "SCSI controller 4 is outside 0–3"),
        ({"slot": 256}, ConfigError, "SCSI slot 256 is outside 0–255"),
        ({"max_iops": -1}, ConfigError, "max_iops: input should be greater than 0"),
    ],
)
async def test_bad_positions_and_limits(
    manager: VmManager, disks: DiskService, image: Path, kwargs: Any, error: type, message: str
) -> None:
    before = stored(manager, "a")
    with pytest.raises(error, match=message):
        await disks.add("a", add(image, **kwargs))
    assert stored(manager, "a") == before


async def test_conflicts(disks: DiskService, image: Path) -> None:
    await disks.add("a", add(image))
    other = image.with_name("e.vhdx")
    create_image(other, CreateSpec(size=4 * MiB))
    with pytest.raises(ConflictError, match=f"slot 0:0 of VM 'a' is taken by {image}"):
        await disks.add("a", add(other, slot=0))
    with pytest.raises(ConflictError, match=r"already attached to VM 'a' \(SCSI 0:0\)"):
        await disks.add("a", add(image, slot=5))
    with pytest.raises(ConflictError, match=r"attached to VM 'a' \(SCSI 0:0\); remove it there"):
        await disks.add("b", add(image))
    await disks.set_dvd("a", str(image))  # any file serves as an ISO
    with pytest.raises(ConflictError, match="taken by the DVD drive"):
        await disks.add("a", add(other, slot=255))


async def test_files_that_are_not_disks_or_outside_the_roots(
    disks: DiskService, image: Path, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        await disks.add("a", add(image.with_name("missing.vhdx")))
    text = image.with_name("notes.txt")
    text.write_text("hello\n")
    with pytest.raises(UsageError, match=r"notes\.txt is not a disk image"):
        await disks.add("a", add(text))
    with pytest.raises(PermissionDenied, match="is outside the storage roots"):
        await disks.add("a", add(tmp_path / "elsewhere.vhdx"))
    with pytest.raises(PermissionDenied, match=r"DVD image .* is outside the storage roots"):
        await disks.set_dvd("a", "/etc/passwd")
    with pytest.raises(UsageError, match="is not absolute"):
        await disks.add("a", DiskAdd(path="d.vhdx"))


async def test_missing_disks_drives_and_vms(disks: DiskService) -> None:
    with pytest.raises(NotFoundError, match="VM 'a' has no disk in SCSI slot 0:7"):
        await disks.remove("a", 0, 7)
    with pytest.raises(NotFoundError, match="VM 'a' has no DVD drive"):
        await disks.set_dvd("a", None)
    with pytest.raises(NotFoundError, match="no VM named 'zz'"):
        await disks.list("zz")


async def test_dvd_insert_and_eject(manager: VmManager, disks: DiskService, image: Path) -> None:
    drive = await disks.set_dvd("a", str(image))
    assert (drive.controller, drive.slot, drive.path) == (0, 255, image)
    assert stored(manager, "a").dvd == drive
    assert (await disks.set_dvd("a", None)).path is None
    dvd = stored(manager, "a").dvd
    assert dvd is not None and dvd.path is None


async def test_a_saved_vm_keeps_its_devices(
    manager: VmManager, disks: DiskService, image: Path
) -> None:
    vm_id = manager.get("a").config.id
    saved = manager.paths.vm_saved_state(vm_id)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(b"memory")
    write_status(manager.paths.vm_status(vm_id), VmStatus(state=VmState.SAVED))
    with pytest.raises(StateError, match="cannot attach a disk to VM 'a': it is Saved"):
        await disks.add("a", add(image))


async def test_list_reads_the_images(disks: DiskService, image: Path) -> None:
    await disks.add("a", add(image))
    rows = (await disks.list("a")).disks
    assert [(r.controller, r.slot, r.error, r.stats) for r in rows] == [(0, 0, None, None)]
    assert rows[0].info is not None and rows[0].info.size == 4 * MiB
    image.unlink()
    row = (await disks.list("a")).disks[0]
    assert row.info is None and row.error is not None and "no such file" in row.error


async def test_a_running_vm_changes_through_its_worker(
    manager: VmManager, disks: DiskService, image: Path
) -> None:
    vm_id = manager.get("a").config.id
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", vm_id]
    worker = subprocess.Popen(sleeper)
    try:
        status = VmStatus(state=VmState.RUNNING, worker_pid=worker.pid)
        write_status(manager.paths.vm_status(vm_id), status)
        await disks.add("a", add(image))
        await disks.set_qos("a", 0, 0, DiskQos(max_iops=50))
        assert (await disks.list("a")).disks[0].stats is not None
        await disks.remove("a", 0, 0)
        await disks.set_dvd("a", str(image))
    finally:
        worker.kill()
        worker.wait()
    ops = [op for op, _ in manager.supervisor.calls]  # type: ignore[attr-defined]
    assert ops == ["disk_add", "disk_set_qos", "stats", "disk_remove", "dvd_set"]
    assert stored(manager, "a").disks() == []


async def test_a_vm_busy_with_a_job_is_refused(
    manager: VmManager, disks: DiskService, image: Path
) -> None:
    release = asyncio.Event()

    async def hold(_: JobContext) -> None:
        await release.wait()

    job = manager.submit_exclusive(manager.get("a").config.id, "export", hold)
    with pytest.raises(ConflictError, match=f"VM 'a' is busy with export \\(job {job.id}\\)"):
        await disks.add("a", add(image))
    release.set()
    await manager.jobs.wait(job.id)
    await disks.add("a", add(image))


@pytest.mark.parametrize("field", ["max_iops", "max_bytes_per_sec"])
def test_qos_limits_qemu_refuses_are_refused(field: str) -> None:
    """Above QEMU's THROTTLE_VALUE_MAX the limit was kept in vm.json, and the VM no longer
    started ("Parameter 'x-iops-total' expects an int64 value")."""
    for model in (DiskAdd, DiskQos):
        extra = {"path": "/d.vhdx"} if model is DiskAdd else {}
        with pytest.raises(ValidationError, match="less than or equal to 1000000000000000"):
            model.model_validate({**extra, field: MAX_QOS_LIMIT + 1})
        assert getattr(model.model_validate({**extra, field: MAX_QOS_LIMIT}), field) == 10**15
