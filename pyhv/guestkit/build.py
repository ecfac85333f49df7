"""Building the guest kit into its cache, and finding the kit that was built.

Layout of the cache (``PYHV_GUESTKIT_DIR``, else ``$XDG_CACHE_HOME/pyhv/guestkit``)::

    downloads/debs/*.deb, downloads/trees/<pkg>/, downloads/resolved.json
    kits/<key>/vmlinuz, initrd.img, rootdisk.img (raw ext4), rootdisk.vhdx, kit.json
    current.json        which kit ``kit_paths()`` returns

``<key>`` hashes every input: the package versions, the kit's own code and guest files, and the
kernel command line, so a kit is rebuilt exactly when one of them changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pyhv.errors import NotFoundError
from pyhv.guestkit import debian, initramfs, rootfs

READY_LINE = "PYHV-GUEST-READY"
CMDLINE = "console=ttyS0 panic=-1 quiet"
KIT_FORMAT = 1
_VHDX_BLOCK_BYTES = 1024 * 1024
_PACKAGE_DIR = Path(__file__).parent

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KitPaths:
    kernel: Path
    initrd: Path
    rootdisk: Path
    rootdisk_raw: Path
    cmdline: str

    def as_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def cache_dir() -> Path:
    explicit = os.environ.get("PYHV_GUESTKIT_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pyhv" / "guestkit"


def code_files() -> dict[str, bytes]:
    """The kit's own code and guest files: a change to any of them must rebuild the kit."""
    files = sorted([*_PACKAGE_DIR.glob("*.py"), *(_PACKAGE_DIR / "guest").iterdir()])
    return {str(p.relative_to(_PACKAGE_DIR)): p.read_bytes() for p in files if p.is_file()}


def cache_key(code: dict[str, bytes], packages: Iterable[debian.Package], cmdline: str) -> str:
    digest = hashlib.sha256(f"pyhv-guestkit {KIT_FORMAT}\n{cmdline}\n".encode())
    for pin in sorted(p.pin for p in packages):
        digest.update(f"package {pin}\n".encode())
    for name, data in sorted(code.items()):
        digest.update(f"file {name} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def _paths(kit: Path) -> KitPaths:
    return KitPaths(
        kernel=kit / "vmlinuz",
        initrd=kit / "initrd.img",
        rootdisk=kit / "rootdisk.vhdx",
        rootdisk_raw=kit / "rootdisk.img",
        cmdline=CMDLINE,
    )


def kit_paths(cache: Path | None = None) -> KitPaths:
    """The kit last built.

    :raise NotFoundError: no kit has been built in this cache.
    """
    cache = cache or cache_dir()
    try:
        key = json.loads((cache / "current.json").read_text())["key"]
    except (OSError, ValueError, KeyError) as err:
        raise NotFoundError(
            f"no guest kit in {cache}; build it with 'pyhv guest-kit build'"
        ) from err
    paths = _paths(cache / "kits" / key)
    if not (cache / "kits" / key / "kit.json").is_file():
        raise NotFoundError(f"guest kit {key} is incomplete; rebuild with 'pyhv guest-kit build'")
    return paths


def _to_vhdx(raw: Path, vhdx: Path) -> None:
    # Imported here: `pyhv guest-kit path` and a cached build need no storage code.
    from pyhv.storage.image import DiskType
    from pyhv.storage.operations.convert import convert_image

    # Small blocks keep the file near the ext4's used size (the 32 MiB default fills it out).
    convert_image(raw, vhdx, disk_type=DiskType.DYNAMIC, block_size=_VHDX_BLOCK_BYTES)


def _assemble(repo: debian.Repository, resolved: debian.Resolved, kit: Path, say: Progress) -> None:
    say("unpacking packages")
    kernel = initramfs.find_kernel(repo.tree(resolved.get(resolved.kernel)))
    userland_packages = [p for p in resolved.packages if not p.name.startswith("linux-image-")]
    agent_files = debian.agent_libraries(repo, userland_packages)
    busybox = repo.tree(resolved.get(debian.BUSYBOX)) / "bin/busybox"
    paths = _paths(kit)
    shutil.copyfile(kernel.vmlinuz, paths.kernel)

    say("assembling the userland")
    userland = kit / "userland"
    userland.mkdir()
    rootfs.populate(userland, busybox, agent_files)

    say("writing the initramfs")
    order = initramfs.module_order(kernel)
    initramfs.write(userland, kernel, order, paths.initrd)

    say("making the ext4 root disk")
    rootfs.make_ext4(userland, paths.rootdisk_raw)
    shutil.rmtree(userland)

    say("converting the root disk to VHDX")
    _to_vhdx(paths.rootdisk_raw, paths.rootdisk)

    manifest = {
        "kernel_release": kernel.release,
        "modules": order,
        "packages": [p.pin for p in resolved.packages],
        "cmdline": CMDLINE,
        "ready_line": READY_LINE,
    }
    (kit / "kit.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _set_current(cache: Path, key: str) -> None:
    tmp = cache / "current.json.tmp"
    tmp.write_text(json.dumps({"key": key}) + "\n")
    os.replace(tmp, cache / "current.json")


def build_kit(
    force: bool = False, progress: Progress | None = None, cache: Path | None = None
) -> KitPaths:
    """Build the kit unless one for the same inputs exists; return its paths.

    ``force`` asks apt again for the newest packages and rebuilds even an existing kit.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: `make test` and a test session may both ask for the kit.
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(force, progress or (lambda _step: None), cache)


def _build_locked(force: bool, say: Progress, cache: Path) -> KitPaths:
    repo = debian.Repository(cache / "downloads")
    say("resolving Debian packages")
    resolved = debian.resolve(repo, refresh=force)
    key = cache_key(code_files(), resolved.packages, CMDLINE)
    kits = cache / "kits"
    kit = kits / key
    if force and kit.exists():
        shutil.rmtree(kit)
    if not (kit / "kit.json").is_file():
        kits.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=kits, prefix=f".{key}-"))
        try:
            _assemble(repo, resolved, tmp, say)
            tmp.chmod(0o755)
            shutil.rmtree(kit, ignore_errors=True)
            os.rename(tmp, kit)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _set_current(cache, key)
    # Under the lock nothing else builds, so every other folder is an old kit or a crashed build.
    for old in kits.iterdir():
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    say("done")
    return _paths(kit)
