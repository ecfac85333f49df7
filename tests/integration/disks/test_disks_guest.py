"""Issue 4's acceptance on one shared guest (boots are expensive under TCG): root on a dynamic
VHDX, four SCSI controllers, 64 tiny disks on one of them and a data disk of every kind on
another, all served by pyhv's storage provider. The tests run in file order and share the VM;
it boots three times: for the patterns (ended by an ACPI shutdown), then once for each kill -9.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pyhv.errors import ConflictError
from pyhv.guestkit import KitPaths
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, VmState, make_vm_config
from pyhv.storage import CreateSpec, DiskType, create_image, open_image
from pyhv.storage.operations import check_chain
from pyhv.units import MiB
from pyhv.worker.local import LocalHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Cli = Callable[..., subprocess.CompletedProcess[str]]
Shell = Callable[[str, str], str]

NAME = "disks"
BOOT_TIMEOUT_S = 240.0
TINY_DISKS = 64  # all on controller 1
OFFSET = 1 * MiB  # where each pattern goes
PATTERN_BYTES = 1 * MiB
# Data disks on controller 2: (file name, type, size). Sizes differ so the guest can tell them
# apart by size alone; the differencing child's parent is written from the host first.
KINDS = [
    ("fixed.vhd", DiskType.FIXED, 8 * MiB),
    ("dynamic.vhd", DiskType.DYNAMIC, 9 * MiB),
    ("fixed.vhdx", DiskType.FIXED, 10 * MiB),
    ("dynamic.vhdx", DiskType.DYNAMIC, 11 * MiB),
    ("plain.img", DiskType.FIXED, 12 * MiB),
    ("child.avhdx", DiskType.DIFFERENCING, 13 * MiB),
]
QEMU_FORMAT = {".vhd": "vpc", ".vhdx": "vhdx", ".img": "raw"}  # qemu-img has no VHDX parents
PARENT_TEXT = b"parent-data\n"
PARENT_SHA256: dict[str, str] = {}  # taken before the VM first boots


def pattern(tag: str, size: int) -> bytes:
    """What ``yes TAG | head -c SIZE`` writes in the guest."""
    line = f"{tag}\n".encode()
    return (line * (size // len(line) + 1))[:size]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _create(path: Path, disk_type: DiskType, size: int) -> None:
    if disk_type == DiskType.DIFFERENCING:
        parent = path.with_name("parent.vhdx")
        create_image(parent, CreateSpec(size=size))
        with open_image(parent, writable=True) as image:
            image.write(0, PARENT_TEXT * (3 * MiB // len(PARENT_TEXT)))
            image.flush()
        create_image(path, CreateSpec(size=0, parent=str(parent)))
    elif path.suffix == ".img":
        with open(path, "wb") as f:
            f.truncate(size)
    else:
        create_image(path, CreateSpec(size=size, disk_type=disk_type))


@pytest.fixture(scope="module")
def disk_dir(host: LocalHost) -> Path:
    folder = host.paths.home / "disks"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def vm(host: LocalHost, kit: KitPaths, disk_dir: Path) -> str:
    root = disk_dir / "root.vhdx"
    shutil.copyfile(kit.rootdisk, root)
    tiny = []
    for slot in range(TINY_DISKS):
        path = disk_dir / f"tiny{slot}.img"
        path.write_bytes(b"")
        os.truncate(path, 1 * MiB)
        tiny.append(DiskAttachment(slot=slot, path=path))
    kinds = []
    for slot, (name, disk_type, size) in enumerate(KINDS):
        _create(disk_dir / name, disk_type, size)
        kinds.append(DiskAttachment(slot=slot, path=disk_dir / name))
    PARENT_SHA256["before"] = sha256(disk_dir / "parent.vhdx")
    last = disk_dir / "last.img"
    last.write_bytes(b"")
    os.truncate(last, 2 * MiB)
    config = make_vm_config(
        name=NAME,
        memory_startup_mib=512,
        kernel=KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
        scsi_controllers=[
            ScsiController(disks=[DiskAttachment(slot=0, path=root)]),
            ScsiController(disks=tiny),
            ScsiController(disks=kinds),
            ScsiController(disks=[DiskAttachment(slot=200, path=last)]),
        ],
    )
    host.inventory.create(config)
    host.start(NAME, wait_ready_s=BOOT_TIMEOUT_S)
    return NAME


def block_sizes(shell: Shell, vm: str) -> dict[int, str]:
    """Size in bytes → device name, for every SCSI disk the guest sees."""
    out = shell(vm, "for d in /sys/block/sd*; do echo ${d##*/} $(cat $d/size); done")
    sizes: dict[int, str] = {}
    for line in out.splitlines():
        name, sectors = line.split()
        sizes.setdefault(int(sectors) * 512, name)
    return sizes


def wait_block(shell: Shell, vm: str, size: int, present: bool) -> bool:
    for _ in range(100):
        if (size in block_sizes(shell, vm)) == present:
            return True
        time.sleep(0.2)
    return False


def test_guest_sees_four_controllers_and_every_disk(vm: str, shell: Shell) -> None:
    hosts = shell(vm, "ls /sys/class/scsi_host | wc -l")
    assert int(hosts) == 4
    disks = shell(vm, "ls /sys/block | grep -c '^sd'")
    assert int(disks) == 1 + TINY_DISKS + len(KINDS) + 1
    root = shell(vm, "awk '$2 == \"/\" { print $1 }' /proc/mounts")
    assert root.strip().startswith("/dev/sd")


def test_guest_writes_patterns_to_every_kind(vm: str, shell: Shell, disk_dir: Path) -> None:
    sizes = block_sizes(shell, vm)
    for name, _, size in KINDS:
        dev = sizes[size]
        tag = f"pyhv-{name}"
        shell(
            vm,
            f"yes {tag} | head -c {PATTERN_BYTES} | "
            f"dd of=/dev/{dev} bs=64k seek={OFFSET // 65536} conv=fsync 2>/dev/null && "
            f"echo {tag}-end | dd of=/dev/{dev} bs=512 seek={size // 512 - 1} conv=sync,fsync "
            "2>/dev/null",
        )
    shell(vm, "sync")


def test_disk_list_shows_images_and_live_counters(vm: str, cli: Cli) -> None:
    result = cli("vm", "disk", "list", vm, "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["controller"], r["slot"]): r for r in json.loads(result.stdout)["disks"]}
    assert len(rows) == 1 + TINY_DISKS + len(KINDS) + 1
    child = rows[(2, 5)]
    assert (child["format"], child["disk_type"]) == ("vhdx", "differencing")
    assert child["stats"]["write_ops"] > 0 and child["stats"]["write_bytes"] >= PATTERN_BYTES
    assert rows[(0, 0)]["stats"]["read_ops"] > 0
    table = cli("vm", "disk", "list", vm).stdout
    assert "vhd fixed" in table and "raw" in table


def test_hot_add_and_remove_through_the_cli(
    host: LocalHost, vm: str, cli: Cli, shell: Shell, disk_dir: Path
) -> None:
    extra = disk_dir / "extra.vhdx"
    create_image(extra, CreateSpec(size=3 * MiB))
    added = cli("vm", "disk", "add", vm, str(extra), "--controller", "3", "--slot", "9")
    assert added.returncode == 0, added.stderr
    assert "SCSI 3:9" in added.stdout
    assert wait_block(shell, vm, 3 * MiB, present=True)
    assert any(d.path == extra for _, d in host.get(vm).disks())
    removed = cli("vm", "disk", "remove", vm, "--controller", "3", "--slot", "9")
    assert removed.returncode == 0, removed.stderr
    assert wait_block(shell, vm, 3 * MiB, present=False)
    assert not any(d.path == extra for _, d in host.get(vm).disks())


def test_disks_in_use_are_locked_against_other_processes(
    host: LocalHost, vm: str, cli: Cli, disk_dir: Path
) -> None:
    with pytest.raises(ConflictError, match=f"is in use by VM '{vm}' \\(pid \\d+\\)"):
        open_image(disk_dir / "dynamic.vhdx", writable=True)
    # The child's parent is shared: reading is fine, writing is not.
    with open_image(disk_dir / "parent.vhdx") as parent:
        assert parent.read(0, len(PARENT_TEXT)) == PARENT_TEXT
    resize = cli("vhd", "resize", str(disk_dir / "parent.vhdx"), "--size", "20M")
    assert resize.returncode == 2
    assert resize.stderr.strip().endswith(f"is in use by VM '{vm}' (pid {worker_pid(host)})")
    # A second VM cannot take the running VM's parent disk either.
    assert cli("vm", "new", "second").returncode == 0
    taken = cli("vm", "disk", "add", "second", str(disk_dir / "parent.vhdx"))
    assert taken.returncode == 2
    assert f"parent.vhdx is in use by VM '{vm}'" in taken.stderr
    assert host.get("second").disks() == []


def worker_pid(host: LocalHost) -> int:
    pid = host.status(host.get(NAME)).worker_pid
    assert pid is not None
    return pid


def test_storage_qos_is_set_live(host: LocalHost, vm: str, cli: Cli, shell: Shell) -> None:
    dev = block_sizes(shell, vm)[12 * MiB]
    result = cli(
        "vm", "disk", "set-qos", vm, "--controller", "2", "--slot", "4", "--max-bandwidth", "1M"
    )
    assert result.returncode == 0, result.stderr
    disk = host.get(vm).scsi_controllers[2].disks[4]
    assert disk.max_bytes_per_sec == MiB
    shell(vm, "echo 3 > /proc/sys/vm/drop_caches")
    start = time.monotonic()
    shell(vm, f"dd if=/dev/{dev} of=/dev/null bs=64k count=64 2>/dev/null")
    # 4 MiB at 1 MiB/s: the throttle makes it take at least ~3 s, however fast the host is.
    assert time.monotonic() - start > 2.5
    args = ("--controller", "2", "--slot", "4", "--max-bandwidth", "0")
    assert cli("vm", "disk", "set-qos", vm, *args).returncode == 0
    assert host.get(vm).scsi_controllers[2].disks[4].max_bytes_per_sec is None


def test_dvd_insert_and_eject(
    host: LocalHost, vm: str, cli: Cli, shell: Shell, disk_dir: Path
) -> None:
    iso = disk_dir / "setup.iso"
    iso.write_bytes(b"PYHV-ISO".ljust(2048, b"\0") * 512)
    result = cli("vm", "dvd", "set", vm, str(iso))
    assert result.returncode == 0, result.stderr
    dvd = host.get(vm).dvd
    assert dvd is not None and dvd.path == iso
    read = "dd if=/dev/sr0 bs=2048 count=1 2>/dev/null | head -c 8"
    assert shell(vm, f"for i in $(seq 50); do {read} && break; sleep 0.2; done") == "PYHV-ISO"
    assert cli("vm", "dvd", "eject", vm).returncode == 0
    dvd = host.get(vm).dvd
    assert dvd is not None and dvd.path is None
    gone = host.exec(vm, ["sh", "-c", "dd if=/dev/sr0 bs=2048 count=1 of=/dev/null"])
    assert gone.exit_code != 0


def test_patterns_are_in_the_images_after_shutdown(
    host: LocalHost, vm: str, disk_dir: Path, tmp_path: Path
) -> None:
    assert host.shutdown(vm, timeout_s=120).state == VmState.OFF
    assert sha256(disk_dir / "parent.vhdx") == PARENT_SHA256["before"]
    for name, _, size in KINDS:
        path = disk_dir / name
        tag = f"pyhv-{name}"
        expected = pattern(tag, PATTERN_BYTES)
        end = f"{tag}-end\n".encode().ljust(512, b"\0")
        with open_image(path) as image:
            assert image.read(OFFSET, PATTERN_BYTES) == expected, name
            assert image.read(size - 512, 512) == end, name
            before = image.read(0, OFFSET)
        if name == "child.avhdx":
            assert before[: len(PARENT_TEXT)] == PARENT_TEXT
        else:
            assert before == bytes(OFFSET), name
        assert check_chain(path) == [], name
        fmt = QEMU_FORMAT.get(path.suffix)
        if fmt is None:
            continue
        raw = tmp_path / f"{name}.raw"
        subprocess.run(
            ["qemu-img", "convert", "-f", fmt, "-O", "raw", str(path), str(raw)], check=True
        )
        data = raw.read_bytes()
        assert data[OFFSET : OFFSET + PATTERN_BYTES] == expected, f"qemu-img: {name}"
        assert data[size - 512 : size] == end, f"qemu-img: {name}"


def test_kill_worker_after_guest_fsync_keeps_the_data(
    host: LocalHost, vm: str, shell: Shell, disk_dir: Path, wait_gone: Callable[..., bool]
) -> None:
    status = host.start(vm, wait_ready_s=BOOT_TIMEOUT_S)
    dev = block_sizes(shell, vm)[11 * MiB]
    # Block 6 MiB of the dynamic VHDX was never written: this write allocates it.
    shell(
        vm,
        f"yes pyhv-killed | head -c {PATTERN_BYTES} | "
        f"dd of=/dev/{dev} bs=64k seek={6 * MiB // 65536} conv=fsync 2>/dev/null",
    )
    assert status.worker_pid is not None
    os.kill(status.worker_pid, signal.SIGKILL)
    assert wait_gone(status.worker_pid)
    path = disk_dir / "dynamic.vhdx"
    assert check_chain(path) == []
    with open_image(path) as image:
        assert image.read(6 * MiB, PATTERN_BYTES) == pattern("pyhv-killed", PATTERN_BYTES)
        assert image.read(OFFSET, PATTERN_BYTES) == pattern("pyhv-dynamic.vhdx", PATTERN_BYTES)


def test_kill_qemu_after_guest_fsync_keeps_the_data(
    host: LocalHost, vm: str, shell: Shell, disk_dir: Path, wait_gone: Callable[..., bool]
) -> None:
    status = host.start(vm, wait_ready_s=BOOT_TIMEOUT_S)
    dev = block_sizes(shell, vm)[10 * MiB]
    shell(
        vm,
        f"yes pyhv-qemu-killed | head -c {PATTERN_BYTES} | "
        f"dd of=/dev/{dev} bs=64k seek={4 * MiB // 65536} conv=fsync 2>/dev/null",
    )
    assert status.qemu_pid is not None and status.worker_pid is not None
    os.kill(status.qemu_pid, signal.SIGKILL)
    assert wait_gone(status.worker_pid)  # the worker closes the disks and ends with QEMU
    path = disk_dir / "fixed.vhdx"
    assert check_chain(path) == []
    with open_image(path) as image:
        assert image.read(4 * MiB, PATTERN_BYTES) == pattern("pyhv-qemu-killed", PATTERN_BYTES)
