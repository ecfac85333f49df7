"""The guest's userland tree (busybox, the guest agent and its libraries, pyhv's init files)
and the ext4 root disk made from it with ``mke2fs -d``, without mounting anything.

The same tree also goes into the initramfs, so a VM without a root disk runs the same init.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pyhv.errors import PyhvError
from pyhv.guestkit.libraries import Found

GUEST_FILES = Path(__file__).with_name("guest")
ROOT_LABEL = "pyhvroot"
ROOTDISK_BYTES = 128 * 1024 * 1024

# Guest path -> (file in GUEST_FILES, mode).
_INIT_FILES = {
    "sbin/init": ("init", 0o755),
    "etc/inittab": ("inittab", 0o644),
    "etc/pyhv/before-poweroff": ("before-poweroff", 0o755),
    "sbin/shutdown": ("shutdown", 0o755),
    "etc/acpi/PWRF/00000080": ("power-button", 0o755),
}
_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root")
_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/hostname": "pyhv-guest\n",
    "etc/os-release": 'NAME="pyhv guest kit"\nID=pyhv-guestkit\nPRETTY_NAME="pyhv guest kit"\n',
}


class RootfsError(PyhvError):
    """mke2fs or busybox failed while building the root file system."""


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise RootfsError(f"{argv[0]} not found (install e2fsprogs)") from err
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RootfsError(f"{argv[0]} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stdout


def _copy(source: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    dest.chmod(mode)


def busybox_applets(busybox: Path) -> list[str]:
    """Where busybox wants each applet linked (``bin/sh``, ``sbin/acpid``…).

    Asked of the downloaded static binary itself, so the links match its configuration.
    """
    return [line for line in _run([str(busybox), "--list-full"]).split() if line]


def populate(dest: Path, busybox: Path, agent_files: Iterable[Found]) -> None:
    """Write the userland into the empty folder ``dest``."""
    for d in _DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "var").mkdir()
    (dest / "var/run").symlink_to("/run")
    _copy(busybox, dest / "bin/busybox", 0o755)
    for applet in busybox_applets(busybox):
        link = dest / applet
        if applet == "bin/busybox" or applet in _INIT_FILES:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath("/bin/busybox", "/" + str(Path(applet).parent)))
    for found in agent_files:
        _copy(found.source, dest / found.guest_path, 0o755)
    for guest_path, (name, mode) in _INIT_FILES.items():
        _copy(GUEST_FILES / name, dest / guest_path, mode)
    for guest_path, text in _ETC.items():
        (dest / guest_path).write_text(text)


def make_ext4(tree: Path, image: Path, size: int = ROOTDISK_BYTES) -> None:
    """A sparse raw image holding an ext4 file system with ``tree``'s contents, owned by root."""
    with image.open("wb") as f:
        f.truncate(size)
    _run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            ROOT_LABEL,
            "-E",
            "root_owner=0:0",
            "-d",
            str(tree),
            str(image),
        ]
    )
