"""Disk and ISO paths given through the API must stay inside the configured storage roots.

The roots are ``PYHV_HOME/disks`` plus the colon-separated ``PYHV_STORAGE_ROOTS``. A path is
accepted only when it is absolute, has no ``..`` component and its real path (all symlinks
resolved) lies inside the real path of a root, so a symlink cannot lead out of a root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pyhv.errors import NotFoundError, PermissionDenied, UsageError
from pyhv.model import VmConfig

STORAGE_ROOTS_ENV = "PYHV_STORAGE_ROOTS"


def storage_roots(home: Path, environ: Mapping[str, str] = os.environ) -> list[Path]:
    extra = [Path(p) for p in environ.get(STORAGE_ROOTS_ENV, "").split(":") if p]
    return [home / "disks", *extra]


class StorageRoots:
    def __init__(self, roots: Iterable[Path]) -> None:
        self._roots = [Path(os.path.realpath(r)) for r in roots]

    @property
    def roots(self) -> list[Path]:
        return list(self._roots)

    @property
    def default(self) -> Path:
        """Where pyhvd puts disks it creates itself (imports): the first root."""
        return self._roots[0]

    def confine(self, path: str | os.PathLike[str], what: str = "path") -> Path:
        """The real path of ``path`` when it lies inside a storage root.

        :raises UsageError: for relative paths and paths with ``..``.
        :raises PermissionDenied: for paths that resolve outside every root.
        """
        text = os.fspath(path)
        if "\0" in text:
            raise UsageError(f"{what} {text!r} contains a NUL byte")
        if not os.path.isabs(text):
            raise UsageError(f"{what} {text!r} is not absolute: give the full path")
        if ".." in Path(text).parts:
            raise UsageError(f"{what} {text!r} contains '..': give the path without it")
        real = Path(os.path.realpath(text))
        if any(real == root or root in real.parents for root in self._roots):
            return real
        shown = ", ".join(str(r) for r in self._roots)
        via = f" (it resolves to {real})" if str(real) != text else ""
        raise PermissionDenied(
            f"{what} {text}{via} is outside the storage roots ({shown}): "
            f"move it there or add its folder to {STORAGE_ROOTS_ENV}"
        )


def confine_config(config: VmConfig, roots: StorageRoots) -> VmConfig:
    """The configuration with every host path it names checked and replaced by its real path.

    QEMU opens these files as pyhvd's user, so an unchecked kernel or disk path would let a
    caller read any host file into a guest.
    """
    data = config.model_dump()
    for c, controller in enumerate(data["scsi_controllers"]):
        for disk in controller["disks"]:
            disk["path"] = roots.confine(disk["path"], f"disk {c}:{disk['slot']}")
    if data["dvd"] and data["dvd"]["path"] is not None:
        data["dvd"]["path"] = roots.confine(data["dvd"]["path"], "DVD image")
    if data["kernel"]:
        data["kernel"]["kernel"] = roots.confine(data["kernel"]["kernel"], "kernel")
        if data["kernel"]["initrd"] is not None:
            data["kernel"]["initrd"] = roots.confine(data["kernel"]["initrd"], "initrd")
    for port in ("com1", "com2"):
        if data[port]["path"] is not None:
            data[port]["path"] = roots.confine(data[port]["path"], f"{port} pipe")
    return VmConfig.model_validate(data)


def require_files(config: VmConfig) -> None:
    """Every disk, DVD image, kernel and initrd the configuration names is a file, as New-VM
    requires of its VHD: a mistyped path would otherwise show only at the first start, and a
    missing kernel then as QEMU's monitor not answering, 30 s later, naming no file.

    :raises NotFoundError: naming the first path that is missing or no file.
    """
    files = [(f"disk {c}:{disk.slot}", disk.path) for c, disk in config.disks()]
    if config.dvd is not None and config.dvd.path is not None:
        files.append(("DVD image", config.dvd.path))
    if config.kernel is not None:
        files.append(("kernel", config.kernel.kernel))
        if config.kernel.initrd is not None:
            files.append(("initrd", config.kernel.initrd))
    for what, path in files:
        if not path.exists():
            raise NotFoundError(f"{what} {path}: no such file")
        if not path.is_file():
            raise NotFoundError(f"{what} {path} is not a file")
