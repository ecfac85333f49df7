"""The whole life of a real guest (the guest kit) through pyhvd: create, start, exec through
the guest agent, statistics, CPU limit in the VM's cgroup, kill -9 of pyhvd while it runs,
then shut down with the ACPI button and remove. One boot for the whole test."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from pyhvd_harness import Pyhvd, PyhvdFactory

from pyhv.client import PyhvClient
from pyhv.errors import NotFoundError, PyhvError
from pyhv.model import VmConfig
from pyhv.service.policies import ProcessorPolicy
from pyhv.service.schemas import VmPatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT_TIMEOUT_S = 240.0
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


def kit():  # type: ignore[no-untyped-def]
    from pyhv.guestkit import kit_paths

    try:
        return kit_paths()
    except NotFoundError as err:
        pytest.skip(str(err))


def wait_for_agent(c: PyhvClient, vm: str) -> None:
    deadline = time.monotonic() + AGENT_TIMEOUT_S
    while True:
        try:
            if c.exec(vm, ["/bin/echo", "ready"], timeout_s=10).stdout.strip() == "ready":
                return
        except PyhvError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def test_real_guest_through_pyhvd(pyhvd_factory: PyhvdFactory) -> None:
    paths = kit()
    d: Pyhvd = pyhvd_factory(extra_env={"PYHV_STORAGE_ROOTS": str(paths.kernel.parent)})
    disk = d.home / "disks" / "root.vhdx"
    shutil.copyfile(paths.rootdisk, disk)
    d.start()
    c = d.client()
    config = VmConfig.model_validate(
        {
            "name": "guest",
            "memory_startup_mib": 512,
            "kernel": {
                "kernel": str(paths.kernel),
                "initrd": str(paths.initrd),
                "cmdline": paths.cmdline,
            },
            "scsi_controllers": [{"disks": [{"slot": 0, "path": str(disk)}]}],
        }
    )
    vm = c.create_vm(config, ProcessorPolicy(limit_percent=20)).config.id
    c.start(vm, wait=True)
    wait_for_agent(c, vm)

    out = c.exec(vm, ["/bin/sh", "-c", "cat; echo err >&2; exit 3"], stdin="from host")
    assert (out.exit_code, out.stdout, out.stderr.strip()) == (3, "from host", "err")
    stats = c.stats(vm)
    assert stats.memory_assigned_mib == 512 and stats.cpu_time_s > 0

    group = CGROUP_CPU / "pyhv" / vm
    if CGROUP_CPU.is_dir():
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "20000"
        qemu_pid = c.get_vm(vm).status.qemu_pid
        assert str(qemu_pid) in (group / "cgroup.procs").read_text().split()
        c.exec(vm, ["/bin/sh", "-c", "(while :; do :; done) >/dev/null 2>&1 &"])
        c.update_vm(vm, VmPatch(policy=ProcessorPolicy(limit_percent=10)))
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "10000"
        deadline = time.monotonic() + 60
        while _throttled(group) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _throttled(group) > 0, "a busy guest under a 10 % limit was never throttled"

    d.kill9()
    d.start()
    c = d.client()
    assert c.get_vm(vm).status.state == "Running"
    assert c.exec(vm, ["/bin/echo", "still here"]).stdout.strip() == "still here"
    assert c.stats(vm).uptime_s > 0

    c.stop(vm, wait=True)
    view = c.get_vm(vm)
    assert (view.status.state, view.status.reason) == ("Off", "guest shut down")
    c.remove_vm(vm)
    assert disk.exists()  # Remove-VM keeps the disks


def _throttled(group: Path) -> int:
    for line in (group / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_throttled":
            return int(value)
    return 0
