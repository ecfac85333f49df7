"""``make demo``: one VM from nothing to shut down, showing each step.

Uses ``PYHV_HOME`` when it is set (the VM is removed at the end, the home stays); otherwise a
temporary home under /tmp that is deleted afterwards. The VM boots the guest kit with its root
file system on a copy of the kit's VHDX, served by pyhv's own storage provider.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from pyhv.cli.vm_disk import disk_table
from pyhv.cli.vm_render import print_vm
from pyhv.errors import PyhvError
from pyhv.guestkit import KitPaths, build_kit
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
from pyhv.paths import HomePaths
from pyhv.storage import CreateSpec, create_image
from pyhv.units import MiB
from pyhv.worker.local import LocalHost
from pyhv.worker.local_disks import LocalDisks

VM_NAME = "demo"
out = Console()


def step(text: str) -> None:
    out.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def get_kit() -> KitPaths:
    step("Guest kit (built from Debian packages, cached)")
    with out.status("guest kit") as status:
        kit = build_kit(progress=lambda s: status.update(f"guest kit: {s}"))
    out.print(f"kernel {kit.kernel}\nroot disk {kit.rootdisk}", highlight=False)
    return kit


def run(home: Path) -> None:
    kit = get_kit()
    host = LocalHost(HomePaths(home))
    disk = home / "demo-root.vhdx"
    shutil.copyfile(kit.rootdisk, disk)
    step(f"New VM '{VM_NAME}': 1 vCPU, 512 MiB, generation 1, root disk {disk.name} on SCSI 0:0")
    config = host.inventory.create(
        make_vm_config(
            name=VM_NAME,
            processor_count=1,
            memory_startup_mib=512,
            kernel=KernelBoot(kernel=kit.kernel, initrd=kit.initrd, cmdline=kit.cmdline),
            scsi_controllers=[ScsiController(disks=[DiskAttachment(slot=0, path=disk)])],
        )
    )
    try:
        step("Start it and wait for the guest's ready line on the serial console")
        started = time.monotonic()
        host.start(VM_NAME, wait_ready_s=180)
        out.print(f"guest ready after {time.monotonic() - started:.1f} s (software emulation)")
        step("State and statistics")
        print_vm(out, config, host.status(config), host.sample(config))
        for argv in (["uname", "-a"], ["df", "-h", "/"], ["cat", "/proc/uptime"]):
            step(f"Run in the guest through its agent: {' '.join(argv)}")
            result = host.exec(VM_NAME, argv)
            out.print(result.stdout.decode(errors="replace").rstrip(), highlight=False)
        hot_add_disk(host, home)
        step("Shut down with the ACPI power button")
        status = host.shutdown(VM_NAME, timeout_s=60)
        out.print(f"VM '{VM_NAME}' is {status.display_state} ({status.reason})")
    finally:
        if host.status(config).state not in ("Off", "Saved"):
            host.turn_off(VM_NAME)
        step(f"Remove VM '{VM_NAME}' (its disk stays until the home is cleaned up)")
        host.remove(VM_NAME)


def hot_add_disk(host: LocalHost, home: Path) -> None:
    """The storage provider's story: a new VHDX appears in the running guest, takes writes
    (counted per disk), and goes away again."""
    data = home / "demo-data.vhdx"
    create_image(data, CreateSpec(size=64 * MiB))
    disks = LocalDisks(host)
    step(f"Hot-add {data.name} (64 MiB dynamic VHDX) at SCSI 0:1, limited to 20 MiB/s")
    disks.add(VM_NAME, data, slot=1, max_bytes_per_sec=20 * MiB)
    script = (
        "for i in $(seq 50); do [ -e /dev/sdb ] && break; sleep 0.2; done; "
        "dd if=/dev/zero of=/dev/sdb bs=1M count=8 conv=fsync 2>/dev/null && "
        "echo wrote 8 MiB to /dev/sdb, fsync included"
    )
    step("In the guest: write 8 MiB to /dev/sdb")
    out.print(host.exec(VM_NAME, ["sh", "-c", script]).stdout.decode().rstrip(), highlight=False)
    out.print(disk_table(*disks.rows(VM_NAME)))
    step("Hot-remove it again")
    disks.remove(VM_NAME, 0, 1)


def main() -> None:
    given = os.environ.get("PYHV_HOME")
    home = Path(given) if given else Path(tempfile.mkdtemp(prefix="pyhv-demo", dir="/tmp"))
    out.print(f"PYHV_HOME = {home} ({'from the environment' if given else 'temporary'})")
    try:
        run(home)
        out.print("\n[bold green]demo finished[/]")
    except PyhvError as e:
        out.print(f"[bold red]demo failed:[/] {e}")
        sys.exit(e.exit_code)
    finally:
        if not given:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
