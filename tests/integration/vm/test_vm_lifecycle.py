"""One generation-1 guest taken through its whole life: the tests run in file order and share
it (boots are expensive under TCG)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import pytest

from pyhv.errors import PyhvError, StateError
from pyhv.guestkit import READY_LINE
from pyhv.model import VmState
from pyhv.storage import CreateSpec, create_image, open_image
from pyhv.units import MiB
from pyhv.worker.local import LocalHost

Cli = Callable[..., subprocess.CompletedProcess[str]]
Shell = Callable[[str, str], str]
MakeVm = Callable[..., str]
BOOT_TIMEOUT_S = 180.0

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "gen1"


@pytest.fixture(scope="module")
def vm(host: LocalHost, make_vm: MakeVm) -> str:
    make_vm(NAME)
    host.start(NAME, wait_ready_s=BOOT_TIMEOUT_S)
    return NAME


def test_boots_to_ready_line(host: LocalHost, vm: str, cli: Cli) -> None:
    config = host.get(vm)
    assert host.status(config).state == VmState.RUNNING
    assert READY_LINE in host.paths.vm_console_log(config.id).read_text(errors="replace")
    assert READY_LINE in cli("vm", "console", vm, "--log").stdout


def test_illegal_transitions_are_refused(host: LocalHost, vm: str, cli: Cli) -> None:
    with pytest.raises(StateError, match=f"cannot start VM '{vm}': it is already Running"):
        host.start(vm)
    with pytest.raises(StateError, match="already Running"):
        host.resume(vm)
    result = cli("vm", "start", vm)
    assert result.returncode == 1
    assert result.stderr.strip() == f"pyhv: error: cannot start VM '{vm}': it is already Running"


def test_exec_returns_output_and_exit_code(vm: str, cli: Cli) -> None:
    result = cli("vm", "exec", vm, "--", "sh", "-c", "uname -s; echo oops >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == "Linux\n"
    assert result.stderr == "oops\n"


def test_statistics(host: LocalHost, vm: str, cli: Cli) -> None:
    sample = host.sample(host.get(vm))
    assert sample is not None
    assert sample.stats.cpu_time_s > 0
    assert len(sample.stats.cpu_time_per_vcpu_s) == 1
    assert sample.stats.memory_assigned_mib == 512
    assert sample.stats.memory_used_mib is not None and sample.stats.memory_used_mib > 0
    assert sample.stats.disks["0:0"].read_ops > 0
    shown = cli("vm", "list")
    assert vm in shown.stdout and "Running" in shown.stdout


def test_pause_stops_guest_time(host: LocalHost, vm: str, shell: Shell) -> None:
    before = float(shell(vm, "cat /proc/uptime").split()[0])
    wall_start = time.monotonic()
    assert host.pause(vm).state == VmState.PAUSED
    with pytest.raises(StateError, match="already Paused"):
        host.pause(vm)
    time.sleep(6)
    assert host.resume(vm).state == VmState.RUNNING
    after = float(shell(vm, "cat /proc/uptime").split()[0])
    wall = time.monotonic() - wall_start
    # Six seconds paused: the guest's clock moved only for the short running parts around it.
    assert after > before
    assert after - before < wall - 4, (before, after, wall)


def test_disk_hot_add_and_remove(host: LocalHost, vm: str, shell: Shell) -> None:
    data = host.paths.home / "data.vhdx"
    create_image(data, CreateSpec(size=16 * MiB))
    client = host.client(host.get(vm))
    client.call("disk_add", {"controller": 0, "slot": 1, "path": str(data)})
    seen = shell(
        vm,
        "for i in $(seq 50); do [ -e /sys/block/sdb ] && break; sleep 0.2; done; "
        "cat /sys/block/sdb/size",
    )
    assert int(seen) == 16 * MiB // 512
    shell(vm, "echo hot-added | dd of=/dev/sdb bs=512 conv=sync,fsync 2>/dev/null")
    client.call("disk_remove", {"controller": 0, "slot": 1})
    gone = shell(
        vm, "for i in $(seq 50); do [ -e /sys/block/sdb ] || break; sleep 0.2; done; ls /sys/block"
    )
    assert "sdb" not in gone.split()
    with open_image(data) as image:
        assert image.read(0, 10) == b"hot-added\n"


def test_save_and_restore_keep_memory(host: LocalHost, vm: str, shell: Shell) -> None:
    shell(vm, "echo kept-in-ram > /tmp/marker")
    config = host.get(vm)
    status = host.save(vm)
    assert status.state == VmState.SAVED
    assert host.paths.vm_saved_state(config.id).exists()
    assert not host.paths.run_dir(config.id).exists()
    assert host.start(vm).state == VmState.RUNNING
    assert shell(vm, "cat /tmp/marker") == "kept-in-ram\n"
    assert not host.paths.vm_saved_state(config.id).exists()


def test_saved_while_paused_comes_back_paused(host: LocalHost, vm: str, shell: Shell) -> None:
    host.pause(vm)
    assert host.save(vm).state == VmState.SAVED
    assert host.start(vm).state == VmState.PAUSED
    assert host.resume(vm).state == VmState.RUNNING
    assert shell(vm, "cat /tmp/marker") == "kept-in-ram\n"


def test_failed_restore_keeps_the_saved_state(host: LocalHost, vm: str, shell: Shell) -> None:
    config = host.get(vm)
    host.save(vm)
    saved = host.paths.vm_saved_state(config.id)
    good = saved.with_name("good.bin")
    os.replace(saved, good)
    saved.write_bytes(b"not a migration stream")
    with pytest.raises(PyhvError, match="the saved state is kept"):
        host.start(vm)
    status = host.status(config)
    assert status.display_state == "Saved-Critical"
    assert status.reason is not None and "turn the VM off to discard it" in status.reason
    assert saved.exists()
    os.replace(good, saved)
    assert host.start(vm).state == VmState.RUNNING
    assert shell(vm, "cat /tmp/marker") == "kept-in-ram\n"


def test_acpi_shutdown_ends_off(host: LocalHost, vm: str, wait_gone: Callable[..., bool]) -> None:
    config = host.get(vm)
    status = host.status(config)
    qemu_pid, worker_pid = status.qemu_pid, status.worker_pid
    assert qemu_pid is not None and worker_pid is not None
    status = host.shutdown(vm, timeout_s=120)
    assert (status.state, status.reason, status.critical) == (VmState.OFF, "guest shut down", False)
    assert wait_gone(qemu_pid) and wait_gone(worker_pid)
    assert not host.paths.run_dir(config.id).exists()


def test_requests_on_an_off_vm_are_refused(host: LocalHost, vm: str, cli: Cli) -> None:
    with pytest.raises(StateError, match=f"cannot pause VM '{vm}': it is Off"):
        host.pause(vm)
    with pytest.raises(StateError, match="it is Off"):
        host.exec(vm, ["true"])
    result = cli("vm", "pause", vm)
    assert result.returncode == 1 and "it is Off" in result.stderr


def test_remove_keeps_disks(host: LocalHost, vm: str, cli: Cli) -> None:
    assert "removed VM" in cli("vm", "remove", vm).stdout
    assert (host.paths.home / f"{vm}.vhdx").exists()
    assert cli("vm", "show", vm).returncode == 2
