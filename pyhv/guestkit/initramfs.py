"""The initramfs: the userland tree plus the kernel modules, ``/init`` and ``/dev/console``,
as a gzip-compressed cpio newc archive.

The modules are stored flat as ``/lib/modules/<name>.ko`` with their load order in
``/etc/pyhv/modules``, which ``/init`` feeds to busybox ``insmod``.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyhv.errors import NotFoundError
from pyhv.guestkit import cpio, elf, modules
from pyhv.guestkit.rootfs import GUEST_FILES

_CONSOLE = (5, 1)


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package: its image, release and loadable modules by name."""

    release: str
    vmlinuz: Path
    modules: dict[str, Path]
    builtin: frozenset[str]


def find_kernel(tree: Path) -> Kernel:
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise NotFoundError(f"no boot/vmlinuz-* in the kernel package unpacked at {tree}")
    release = images[-1].name.removeprefix("vmlinuz-")
    moddir = tree / "lib/modules" / release
    found = {modules.normalize(p.name.removesuffix(".ko")): p for p in moddir.rglob("*.ko")}
    builtin_list = moddir / "modules.builtin"
    builtin = (
        {Path(line).name.removesuffix(".ko") for line in builtin_list.read_text().split()}
        if builtin_list.exists()
        else set()
    )
    return Kernel(release, images[-1], found, frozenset(modules.normalize(b) for b in builtin))


def module_order(kernel: Kernel) -> list[str]:
    """The modules the guest loads, dependencies first, read from each module's ``.modinfo``."""
    depends = {}
    for name, path in kernel.modules.items():
        info = elf.section(path.read_bytes(), ".modinfo")
        depends[name] = modules.dependencies(modules.parse_modinfo(info or b""))
    return modules.load_order(modules.WANTED, depends, kernel.builtin)


def _tree_entries(root: Path) -> Iterator[cpio.Entry]:
    """Every folder, file and symlink under ``root``, parents first, in a stable order.

    A symlink to a folder is listed among ``dirs`` and, since os.walk does not follow it,
    becomes a symlink entry.
    """
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(folder)
        for name in [*dirs, *sorted(files)]:
            path = base / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield cpio.Entry(rel, stat.S_IFLNK | 0o777, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                yield cpio.Entry(rel, stat.S_IFDIR | 0o755)
            else:
                mode = stat.S_IFREG | stat.S_IMODE(st.st_mode)
                yield cpio.Entry(rel, mode, path.read_bytes())


def entries(userland: Path, kernel: Kernel, order: list[str]) -> Iterator[cpio.Entry]:
    yield from _tree_entries(userland)
    yield cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=_CONSOLE)
    yield cpio.Entry("newroot", stat.S_IFDIR | 0o755)
    yield cpio.Entry("init", stat.S_IFREG | 0o755, (GUEST_FILES / "stage1").read_bytes())
    if not (userland / "lib").is_dir():
        yield cpio.Entry("lib", stat.S_IFDIR | 0o755)
    yield cpio.Entry("lib/modules", stat.S_IFDIR | 0o755)
    for name in order:
        data = kernel.modules[name].read_bytes()
        yield cpio.Entry(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, data)
    listing = "".join(f"{name}\n" for name in order).encode()
    yield cpio.Entry("etc/pyhv/modules", stat.S_IFREG | 0o644, listing)


def write(userland: Path, kernel: Kernel, order: list[str], out: Path) -> None:
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        cpio.write(entries(userland, kernel, order), gz)
