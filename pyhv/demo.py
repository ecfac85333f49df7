"""``make demo``: one VM from nothing to shut down, as a user would do it with ``pyhv``.

It starts its own pyhvd (in the foreground, as a child it stops at the end) on ``PYHV_HOME``
when that is set (the VM is removed at the end, the home stays), otherwise on a temporary home
under /tmp that is deleted afterwards. Every step is a ``pyhv`` command, shown and then run.
The VM boots the guest kit with its root file system on a copy of the kit's VHDX, served by
pyhv's own storage provider.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from pyhv.client import PyhvClient
from pyhv.errors import PyhvError
from pyhv.guestkit import KitPaths, build_kit
from pyhv.model import VmState
from pyhv.paths import HomePaths
from pyhv.service import default_socket
from pyhv.service.child import child_pyhvd
from pyhv.service.confine import STORAGE_ROOTS_ENV

VM_NAME = "demo"
out = Console()


class DemoFailed(PyhvError):
    pass


def step(text: str) -> None:
    out.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def pyhv(env: dict[str, str], *args: str) -> None:
    """Show the command, then run it with its output on the terminal.

    :raises DemoFailed: when it fails (it has printed why).
    """
    out.print(f"[dim]$[/] pyhv {shlex.join(args)}", highlight=False)
    if subprocess.run([sys.executable, "-m", "pyhv.cli", *args], env=env).returncode != 0:
        raise DemoFailed(f"`pyhv {shlex.join(args)}` failed")


def get_kit() -> KitPaths:
    step("Guest kit (built from Debian packages, cached)")
    with out.status("guest kit") as status:
        kit = build_kit(progress=lambda s: status.update(f"guest kit: {s}"))
    out.print(f"kernel {kit.kernel}\nroot disk {kit.rootdisk}", highlight=False)
    return kit


@contextmanager
def running_pyhvd(home: Path, env: dict[str, str]) -> Iterator[None]:
    log_path = home / "pyhvd.log"
    step(f"Start the management service: pyhvd --home {home} (log: {log_path})")
    with child_pyhvd(home, env, log_path) as info:
        out.print(f"pyhvd {info.version} serves {info.home}", highlight=False)
        try:
            yield
        finally:
            step("Stop pyhvd")


def run(home: Path) -> None:
    kit = get_kit()
    # pyhvd may read the kit's kernel and initrd, and the disks in the home.
    roots = ":".join(p for p in (os.environ.get(STORAGE_ROOTS_ENV), str(kit.kernel.parent)) if p)
    env = dict(os.environ, PYHV_HOME=str(home), **{STORAGE_ROOTS_ENV: roots})
    disks = home / "disks"
    disks.mkdir(parents=True, exist_ok=True)
    root = disks / "demo-root.vhdx"
    shutil.copyfile(kit.rootdisk, root)
    with running_pyhvd(home, env):
        step(f"New VM '{VM_NAME}': 1 vCPU, 512 MiB, generation 1, root disk {root.name}")
        boot = ["--kernel", str(kit.kernel), "--initrd", str(kit.initrd), "--cmdline", kit.cmdline]
        pyhv(
            env, "vm", "new", VM_NAME, "--cpus", "1", "--memory", "512M", *boot, "--disk", str(root)
        )
        try:
            boot_and_use(env, disks)
        finally:
            turn_off_if_running(env, home)
            step(f"Remove VM '{VM_NAME}' (its disks stay until the home is cleaned up)")
            pyhv(env, "vm", "remove", VM_NAME)


def boot_and_use(env: dict[str, str], disks: Path) -> None:
    step("Start it and wait for the guest's ready line on the serial console")
    started = time.monotonic()
    pyhv(env, "vm", "start", VM_NAME, "--wait-ready", "--timeout", "180")
    out.print(f"guest ready after {time.monotonic() - started:.1f} s (software emulation)")
    step("State and statistics")
    pyhv(env, "vm", "show", VM_NAME)
    for argv in (["uname", "-a"], ["df", "-h", "/"], ["cat", "/proc/uptime"]):
        step(f"Run in the guest through its agent: {' '.join(argv)}")
        pyhv(env, "vm", "exec", VM_NAME, "--", *argv)
    hot_add_disk(env, disks)
    step("Shut down with the ACPI power button")
    pyhv(env, "vm", "stop", VM_NAME, "--timeout", "60")
    pyhv(env, "vm", "list")


def hot_add_disk(env: dict[str, str], disks: Path) -> None:
    """The storage provider's story: a new VHDX appears in the running guest, takes writes
    (counted per disk), and goes away again."""
    data = disks / "demo-data.vhdx"
    step("A 64 MiB dynamic VHDX, hot-added at SCSI 0:1 and limited to 20 MiB/s")
    pyhv(env, "vhd", "new", str(data), "--size", "64M")
    pyhv(env, "vm", "disk", "add", VM_NAME, str(data), "--slot", "1", "--max-bandwidth", "20M")
    script = (
        "for i in $(seq 50); do [ -e /dev/sdb ] && break; sleep 0.2; done; "
        "dd if=/dev/zero of=/dev/sdb bs=1M count=8 conv=fsync 2>/dev/null && "
        "echo wrote 8 MiB to /dev/sdb, fsync included"
    )
    step("In the guest: write 8 MiB to /dev/sdb")
    pyhv(env, "vm", "exec", VM_NAME, "--", "sh", "-c", script)
    pyhv(env, "vm", "disk", "list", VM_NAME)
    step("Hot-remove it again")
    pyhv(env, "vm", "disk", "remove", VM_NAME, "--slot", "1")


def turn_off_if_running(env: dict[str, str], home: Path) -> None:
    """After a failure: workers outlive pyhvd, so the VM must not be left running."""
    with PyhvClient(default_socket(HomePaths(home))) as client:
        state = client.get_vm(VM_NAME).status.state
    if state not in (VmState.OFF, VmState.SAVED):
        pyhv(env, "vm", "stop", VM_NAME, "--turn-off")


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
