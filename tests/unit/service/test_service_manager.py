"""VmManager's decisions with a fake supervisor: legality, admission, busy VMs, cgroups."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pyhv.errors import ConfigError, ConflictError, NotFoundError, StateError
from pyhv.host.resources import HostResources
from pyhv.inventory import Inventory
from pyhv.model import VmConfig, VmState, VmStatus
from pyhv.paths import HomePaths
from pyhv.service.commands import CreateVm, Power, PowerVm, RemoveVm, UpdateVm
from pyhv.service.confine import StorageRoots
from pyhv.service.events import EventBus
from pyhv.service.jobs import JobContext, Jobs, JobState
from pyhv.service.manager import VmManager
from pyhv.service.policies import CpuSettings, ProcessorPolicy
from pyhv.service.schemas import VmPatch
from pyhv.worker.status_file import worker_alive, write_status

pytestmark = pytest.mark.anyio

HOST = HostResources(cores=2, memory_mib=4096)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeSupervisor:
    """Plays the worker: a sleeping process whose command line names the VM (as a real
    worker's does), and the status file a real worker would write."""

    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths
        self.calls: list[str] = []
        self.args: dict[str, dict[str, Any] | None] = {}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def _set(self, config: VmConfig, state: VmState) -> None:
        if state in (VmState.OFF, VmState.SAVED) and config.id in self.workers:
            worker = self.workers.pop(config.id)
            worker.kill()
            worker.wait()
        worker_pid = self.workers[config.id].pid if config.id in self.workers else None
        status = VmStatus(state=state, worker_pid=worker_pid)
        write_status(self.paths.vm_status(config.id), status)

    def launch(self, config: VmConfig, *, restore: bool) -> None:
        self.calls.append("launch")
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)", config.id]
        self.workers[config.id] = subprocess.Popen(sleeper)
        # Until it has exec'd, the child shows pytest's command line, and a status read then
        # would find no worker for the VM ("worker died"), as a real worker is named at start.
        deadline = time.monotonic() + 10
        while not worker_alive(self.workers[config.id].pid, config.id):
            assert time.monotonic() < deadline, "the stand-in worker did not start"
            time.sleep(0.001)
        self._set(config, VmState.RUNNING)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
            worker.wait()

    def call(
        self, config: VmConfig, op: str, timeout_s: float, args: dict[str, Any] | None = None
    ) -> Any:
        self.calls.append(op)
        self.args[op] = args
        states = {"turn_off": VmState.OFF, "pause": VmState.PAUSED, "resume": VmState.RUNNING}
        if op in states:
            self._set(config, states[op])
        return {}

    def pids(self, status: VmStatus) -> list[int]:
        return [4242]


class FakeCgroups:
    def __init__(self) -> None:
        self.applied: dict[str, CpuSettings] = {}
        self.removed: list[str] = []

    def apply(self, vm_id: str, settings: CpuSettings) -> None:
        self.applied[vm_id] = settings

    def attach(self, vm_id: str, pids: Any) -> None:
        pass

    def remove(self, vm_id: str) -> None:
        self.removed.append(vm_id)


def make_manager(tmp_path: Path) -> VmManager:
    paths = HomePaths(tmp_path, run_root=tmp_path / "run")
    events = EventBus()
    jobs = Jobs(events)
    m = VmManager(
        Inventory(paths, HOST),
        events,
        jobs,
        StorageRoots([tmp_path / "disks"]),
        HOST,
        FakeSupervisor(paths),
        FakeCgroups(),
        available_memory_mib=lambda: 1024,
    )
    return m


@pytest.fixture
async def manager(tmp_path: Path) -> Any:
    m = make_manager(tmp_path)
    await m.start()
    yield m
    await m.jobs.close()
    await m.close()
    m.supervisor.close()  # type: ignore[attr-defined]


async def create(m: VmManager, name: str, reserve: int = 0, memory: int = 64) -> str:
    view = await m.create(
        CreateVm(
            VmConfig(name=name, memory_startup_mib=memory),
            ProcessorPolicy(reserve_percent=reserve, limit_percent=50),
        )
    )
    return view.config.id


async def run(m: VmManager, vm: str, op: Power) -> JobState:
    job = await m.power(PowerVm(vm, op))
    return (await m.jobs.wait(job.id)).state


async def test_start_pause_turn_off(manager: VmManager) -> None:
    vm = await create(manager, "a")
    assert await run(manager, "a", Power.START) == JobState.COMPLETED
    assert manager.get(vm).status.state == VmState.RUNNING
    assert manager.cgroups.applied[vm].quota_us == 50_000  # type: ignore[union-attr]
    assert await run(manager, "a", Power.PAUSE) == JobState.COMPLETED
    assert manager.get("a").status.state == VmState.PAUSED
    with pytest.raises(StateError, match="it is already Paused"):
        await manager.power(PowerVm("a", Power.PAUSE))
    assert await run(manager, "a", Power.TURN_OFF) == JobState.COMPLETED
    assert manager.get("a").status.state == VmState.OFF
    assert manager.cgroups.removed == [vm]  # type: ignore[union-attr]
    assert manager.supervisor.calls == ["launch", "pause", "turn_off"]  # type: ignore[attr-defined]


async def test_reserve_that_cannot_be_honored_is_refused(manager: VmManager) -> None:
    await create(manager, "big", reserve=100)  # 1 processor x 100 %
    await create(manager, "bigger", reserve=100)
    await create(manager, "third", reserve=50)
    await run(manager, "big", Power.START)
    await run(manager, "bigger", Power.START)
    with pytest.raises(ConflictError, match=r"reserved by big \(1\), bigger \(1\)"):
        await manager.power(PowerVm("third", Power.START))
    assert manager.get("third").status.state == VmState.OFF
    assert manager.supervisor.calls.count("launch") == 2  # type: ignore[attr-defined]


async def test_memory_the_host_cannot_back_is_refused(manager: VmManager) -> None:
    await create(manager, "fat", memory=2048)
    with pytest.raises(ConflictError, match="not enough memory to start fat"):
        await manager.power(PowerVm("fat", Power.START))


async def test_changes_needing_off(manager: VmManager) -> None:
    await create(manager, "a")
    await run(manager, "a", Power.START)
    with pytest.raises(StateError, match="cannot change processor count of VM 'a'"):
        await manager.update(UpdateVm("a", VmPatch(processor_count=2)))
    # Named as users know the setting, not as the field (once "memory startup mib").
    with pytest.raises(StateError, match=r"^cannot change startup memory of VM 'a': it is Running"):
        await manager.update(UpdateVm("a", VmPatch(memory_startup_mib=1024)))
    with pytest.raises(StateError, match="cannot remove VM 'a'"):
        await manager.remove(RemoveVm("a"))
    view = await manager.update(UpdateVm("a", VmPatch(policy=ProcessorPolicy(limit_percent=25))))
    assert view.policy.limit_percent == 25
    assert manager.cgroups.applied[view.config.id].quota_us == 25_000  # type: ignore[union-attr]


async def test_a_running_vm_renamed_has_its_worker_told(manager: VmManager) -> None:
    """The worker kept the name the VM had at start in its messages."""
    await create(manager, "web")
    await manager.update(UpdateVm("web", VmPatch(name="www")))
    assert "rename" not in manager.supervisor.calls  # type: ignore[attr-defined]
    await run(manager, "www", Power.START)
    await manager.update(UpdateVm("www", VmPatch(name="web 2")))
    assert manager.supervisor.args["rename"] == {"name": "web 2"}  # type: ignore[attr-defined]


async def test_listing_is_cached_until_a_change(manager: VmManager) -> None:
    await create(manager, "a")
    tag, first = manager.list_json()
    assert manager.list_json() == (tag, first)
    assert manager.list_json()[1] is first
    view = manager.get_json("a")
    assert manager.get_json("a") is view
    await create(manager, "b")
    new_tag, listing = manager.list_json()
    assert new_tag != tag and b'"b"' in listing
    await manager.update(UpdateVm("a", VmPatch(notes="changed")))
    assert b"changed" in manager.get_json("a")
    await manager.remove(RemoveVm("b"))
    with pytest.raises(NotFoundError):
        manager.get("b")


async def test_changes_made_by_others_are_picked_up(manager: VmManager, tmp_path: Path) -> None:
    paths = HomePaths(tmp_path, run_root=tmp_path / "run")
    other = Inventory(paths, HOST).create(VmConfig(name="from-cli", memory_startup_mib=64))
    await manager.refresh()
    assert manager.get("from-cli").config.id == other.id
    write_status(paths.vm_status(other.id), VmStatus(critical=True, reason="qemu died"))
    await manager.refresh()
    assert manager.get("from-cli").status.reason == "qemu died"
    Inventory(paths, HOST).remove(other.id)
    await manager.refresh()
    with pytest.raises(NotFoundError):
        manager.get("from-cli")


async def test_automatic_start_actions(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path, run_root=tmp_path / "run")
    inventory = Inventory(paths, HOST)

    def vm(name: str, action: str) -> str:
        config = VmConfig(name=name, memory_startup_mib=64, automatic_start_action=action)
        return inventory.create(config).id

    always = vm("always", "start")
    was_running = vm("was-running", "start_if_running")
    vm("was-off", "start_if_running")
    vm("never", "nothing")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_worker = VmStatus(state=VmState.RUNNING, worker_pid=int(gone.stdout))
    write_status(paths.vm_status(was_running), dead_worker)

    m = make_manager(tmp_path)
    try:
        await m.start()
        for job in m.jobs.list():
            await m.jobs.wait(job.id)
        started = {j.vm_id for j in m.jobs.list() if j.state == JobState.COMPLETED}
        assert started == {always, was_running}
        assert m.get("was-off").status.state == VmState.OFF
    finally:
        await m.jobs.close()
        await m.close()
        m.supervisor.close()  # type: ignore[attr-defined]


async def test_a_slow_change_holds_its_vm_only(manager: VmManager) -> None:
    """A disk change waiting for its guest delays the VM's power job, not other VMs."""
    await create(manager, "a")
    await create(manager, "b")
    release = asyncio.Event()

    async def slow_change() -> None:
        async with manager.holding("a"):
            await release.wait()

    change = asyncio.create_task(slow_change())
    await asyncio.sleep(0.01)
    start_a = asyncio.create_task(manager.power(PowerVm("a", Power.START)))
    async with asyncio.timeout(30):
        await create(manager, "c")
        await manager.update(UpdateVm("b", VmPatch(notes="meanwhile")))
        assert await run(manager, "b", Power.START) == JobState.COMPLETED
    assert not start_a.done()
    release.set()
    await change
    job = await start_a
    assert (await manager.jobs.wait(job.id)).state == JobState.COMPLETED


async def test_a_job_refuses_the_vm_s_other_changes(manager: VmManager) -> None:
    await create(manager, "a")
    release = asyncio.Event()

    async def hold(_: JobContext) -> None:
        await release.wait()

    async with manager.holding("a") as entry:
        job = manager.submit_exclusive(entry.config.id, "export", hold)
    busy = f"VM 'a' is busy with export \\(job {job.id}\\)"
    with pytest.raises(ConflictError, match=busy):
        await manager.power(PowerVm("a", Power.START))
    with pytest.raises(ConflictError, match=busy):
        await manager.update(UpdateVm("a", VmPatch(notes="no")))
    with pytest.raises(ConflictError, match=busy):
        await manager.remove(RemoveVm("a"))
    release.set()
    await manager.jobs.wait(job.id)
    await manager.remove(RemoveVm("a"))


async def test_create_refuses_a_disk_another_vm_attaches(
    manager: VmManager, tmp_path: Path
) -> None:
    """As attaching refuses it: two VMs writing one disk corrupt it, the other VM Off or not."""
    disk = tmp_path / "disks" / "root.vhdx"
    disk.parent.mkdir(exist_ok=True)
    disk.write_bytes(b"")

    def with_disk(name: str) -> CreateVm:
        config = VmConfig.model_validate(
            {"name": name, "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disk)}]}]}
        )
        return CreateVm(config, ProcessorPolicy())

    await manager.create(with_disk("web"))
    with pytest.raises(
        ConflictError, match=r"is attached to VM 'web' \(SCSI 0:0\); remove it there first"
    ):
        await manager.create(with_disk("db"))
    assert [e.config.name for e in manager.registry.entries()] == ["web"]


async def test_create_refuses_missing_files(manager: VmManager, tmp_path: Path) -> None:
    """A missing kernel failed only at start, as QEMU's monitor not answering in 30 s."""
    (tmp_path / "disks").mkdir(exist_ok=True)
    kernel = tmp_path / "disks" / "vmlinuz"
    config = VmConfig.model_validate({"name": "k", "kernel": {"kernel": str(kernel)}})
    with pytest.raises(NotFoundError, match=f"^kernel {kernel}: no such file$"):
        await manager.create(CreateVm(config, ProcessorPolicy()))
    kernel.write_bytes(b"")
    await manager.create(CreateVm(config, ProcessorPolicy()))


async def test_a_name_of_an_id_s_form_is_refused(manager: VmManager) -> None:
    """Lookups take ids first: VM 'b' named after VM a's id hid behind a, and removing 'b' by
    its name removed a."""
    a_id = await create(manager, "a")
    with pytest.raises(ConfigError, match="has the form of a VM id: choose another name"):
        await create(manager, a_id)
    await create(manager, "b")
    with pytest.raises(ConfigError, match="has the form of a VM id"):
        await manager.update(UpdateVm("b", VmPatch(name=a_id)))
    assert sorted(e.config.name for e in manager.registry.entries()) == ["a", "b"]
    await create(manager, a_id.upper())  # not how ids are written: no lookup takes it for one
