from __future__ import annotations

import gzip
import stat
from collections.abc import Callable
from pathlib import Path

from pyhv.guestkit import cpio, initramfs, rootfs
from pyhv.guestkit.libraries import Found


def fake_busybox(path: Path) -> Path:
    """A stand-in that answers ``--list-full`` like the real static busybox."""
    path.write_text("#!/bin/sh\nprintf 'bin/busybox\\nbin/sh\\nsbin/init\\nsbin/acpid\\n'\n")
    path.chmod(0o755)
    return path


def fake_kernel(tmp_path: Path, elf_file: Callable[..., bytes]) -> Path:
    tree = tmp_path / "kernel"
    moddir = tree / "lib/modules/6.1.0-1-cloud-amd64"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/vmlinuz-6.1.0-1-cloud-amd64").write_bytes(b"kernel")
    (moddir / "kernel/drivers").mkdir(parents=True)
    (moddir / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    depends = {
        "virtio": "",
        "virtio_ring": "",
        "virtio_pci": "virtio,virtio_ring",
        "virtio_blk": "virtio,virtio_ring",
        "scsi_mod": "",
        "cdrom": "",
        "sd_mod": "scsi_mod",
        "sr_mod": "scsi_mod,cdrom",
        "isofs": "cdrom",
        "virtio_scsi": "scsi_mod,virtio",
        "virtio_net": "virtio",
        "virtio_console": "virtio",
        "virtio_balloon": "virtio",
        "button": "",
        "evdev": "",
    }
    for name, deps in depends.items():
        modinfo = f"depends={deps}\0name={name}\0".encode()
        (moddir / f"kernel/drivers/{name}.ko").write_bytes(elf_file(sections={".modinfo": modinfo}))
    return tree


def test_populate_links_applets_and_keeps_pyhv_init(tmp_path: Path) -> None:
    busybox = fake_busybox(tmp_path / "busybox")
    agent = tmp_path / "qemu-ga"
    agent.write_bytes(b"agent")
    tree = tmp_path / "root"
    tree.mkdir()
    rootfs.populate(tree, busybox, [Found("usr/sbin/qemu-ga", agent, "qemu-guest-agent")])
    assert (tree / "bin/sh").readlink() == Path("busybox")
    assert (tree / "sbin/acpid").readlink() == Path("../bin/busybox")
    assert not (tree / "sbin/init").is_symlink()
    assert b"PYHV-GUEST-READY" in (tree / "sbin/init").read_bytes()
    assert (tree / "usr/sbin/qemu-ga").stat().st_mode & 0o111
    assert (tree / "etc/acpi/PWRF/00000080").stat().st_mode & 0o111
    assert (tree / "sbin/shutdown").stat().st_mode & 0o111


def test_initramfs_has_init_console_and_modules_in_order(
    tmp_path: Path, elf_file: Callable[..., bytes]
) -> None:
    kernel = initramfs.find_kernel(fake_kernel(tmp_path, elf_file))
    assert kernel.release == "6.1.0-1-cloud-amd64"
    assert "ext4" in kernel.builtin
    order = initramfs.module_order(kernel)
    assert order.index("virtio") < order.index("virtio_pci") < order.index("virtio_scsi")
    assert order.index("sd_mod") < order.index("virtio_scsi")

    userland = tmp_path / "root"
    userland.mkdir()
    rootfs.populate(userland, fake_busybox(tmp_path / "busybox"), [])
    out = tmp_path / "initrd.img"
    initramfs.write(userland, kernel, order, out)
    members = {e.path: e for e in cpio.read(gzip.decompress(out.read_bytes()))}

    assert stat.S_ISCHR(members["dev/console"].mode)
    assert members["dev/console"].rdev == (5, 1)
    assert members["init"].data.startswith(b"#!/bin/sh")
    assert members["init"].mode & 0o111
    assert stat.S_ISLNK(members["var/run"].mode)
    assert members["etc/pyhv/modules"].data.decode().split() == order
    assert all(f"lib/modules/{name}.ko" in members for name in order)
    paths = list(members)
    assert all(paths.index(str(Path(p).parent)) < paths.index(p) for p in paths if "/" in p)
