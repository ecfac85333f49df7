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

from pyhv.cli.vm_render import print_vm
from pyhv.errors import PyhvError
from pyhv.guestkit import KitPaths, build_kit
from pyhv.model import DiskAttachment, KernelBoot, ScsiController, make_vm_config
from pyhv.paths import HomePaths
from pyhv.worker.local import LocalHost

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
        step("Shut down with the ACPI power button")
        status = host.shutdown(VM_NAME, timeout_s=60)
        out.print(f"VM '{VM_NAME}' is {status.display_state} ({status.reason})")
    finally:
        if host.status(config).state not in ("Off", "Saved"):
            host.turn_off(VM_NAME)
        step(f"Remove VM '{VM_NAME}' (its disk stays until the home is cleaned up)")
        host.remove(VM_NAME)


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
