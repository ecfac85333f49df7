"""``create_image``: a new empty image whose format comes from the file name (New-VHD)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from pyhv.errors import ConflictError, PyhvError, UsageError
from pyhv.storage.chains import driver_for, format_for_name, open_chain
from pyhv.storage.formats import FormatDriver
from pyhv.storage.image import CreateSpec, DiskImage, DiskType


def create_image(path: str | os.PathLike[str], spec: CreateSpec) -> None:
    """Write a new image at ``path``; with ``spec.parent`` a differencing child of that chain.

    The child's format comes from its own extension, so a VHDX child of a VHD parent works.
    Nothing is left behind when creation fails.

    :raises UsageError: unknown extension or invalid sizes.
    :raises ConflictError: ``path`` exists.
    """
    p = Path(path)
    fmt = format_for_name(p)
    if fmt is None:
        raise UsageError(
            f"{p}: unknown extension {p.suffix!r}: use .vhd, .vhdx, .avhd, .avhdx, .img or .raw"
        )
    if p.exists() or p.is_symlink():
        raise ConflictError(f"{p} already exists; remove it or pick another name")
    if not p.parent.is_dir():
        raise UsageError(f"{p}: folder {p.parent} does not exist")
    driver = driver_for(fmt)
    if spec.parent is None:
        if spec.disk_type == DiskType.DIFFERENCING:
            raise UsageError(f"{p}: a differencing disk needs a parent")
        _create(driver, p, spec, None)
        return
    with open_chain(spec.parent) as parent:
        # a differencing disk always has its parent's size, whatever the caller passed
        child_spec = replace(spec, size=parent.size, disk_type=DiskType.DIFFERENCING)
        _create(driver, p, child_spec, parent)


def _create(driver: FormatDriver, path: Path, spec: CreateSpec, parent: DiskImage | None) -> None:
    try:
        driver.create(path, spec, parent)
    except ConflictError:
        raise  # someone else's file appeared meanwhile: not ours to remove
    except BaseException:
        _remove_partial(path)
        raise


def _remove_partial(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise PyhvError(f"{path}: creation failed and the partial file could not be removed") from e
